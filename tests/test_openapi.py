"""The published contract: `/openapi.json` is a valid OpenAPI 3.1 document whose every
reference resolves and whose examples obey its schemas; Schemathesis, with every phase and
every check, finds no answer of the running service that the document does not describe;
and a client generated from it by a maintained generator works."""

from __future__ import annotations

import importlib
import os
import random
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.support import ROOT, TestDatabase, launch_service, migrated
from wallet_api.devtools.server import ServiceProcess

#: Schemathesis examples per operation and phase: about 1,200 requests in all.
FUZZ_EXAMPLES_PER_OPERATION = 100
FUZZ_MIN_CASES = 1000
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document(service: ServiceProcess) -> dict[str, Any]:
    response = httpx.get(service.base_url + "/openapi.json")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_reference_resolves_from_the_documents_root(document: dict[str, Any]) -> None:
    references: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    references.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert references
    for reference in references:
        assert reference.startswith("#/"), reference
        node: Any = document
        for part in reference[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(node, dict), reference
            assert key in node, f"{reference} does not resolve"
            node = node[key]


def test_every_response_is_described_with_its_schema_headers_and_codes(
    document: dict[str, Any],
) -> None:
    for path, method, operation in operations(document):
        assert operation["operationId"], (method, path)
        assert operation["description"], (method, path)
        for status, response in operation["responses"].items():
            where = f"{method.upper()} {path} {status}"
            assert response["description"], where
            assert "X-Request-ID" in response["headers"], where
            if status == "204":  # a deletion's: no body at all
                assert "content" not in response, where
                continue
            if (method, path) == (
                "get",
                "/api/v1/wallets/{wallet_uuid}/statement",
            ) and status == "200":
                # A statement is JSON, or CSV on request (`format=csv`).
                assert sorted(response["content"]) == ["application/json", "text/csv"], where
                assert response["content"]["text/csv"]["example"], where
                continue
            (media_type,) = response["content"]
            schema = response["content"][media_type]["schema"]
            if int(status) >= 400:
                assert media_type == "application/problem+json", where
                codes = schema["allOf"][1]["properties"]["code"]["enum"]
                examples = response["content"][media_type]["examples"]
                assert sorted(examples) == sorted(codes), where
                assert all(f"`{code}`" in response["description"] for code in codes), where
            else:
                assert media_type == "application/json", where
            if status == "503":
                assert "Retry-After" in response["headers"], where
    problem_codes = {
        code
        for _, _, operation in operations(document)
        for status, response in operation["responses"].items()
        if int(status) >= 400
        for code in response["content"]["application/problem+json"]["schema"]["allOf"][1][
            "properties"
        ]["code"]["enum"]
    }
    assert problem_codes >= {
        "insufficient_funds",
        "balance_limit_exceeded",
        "wallet_not_found",
        "idempotency_key_reused",
        "validation_error",
        "body_too_large",
        "outcome_unknown",
        "internal_error",
        "wallet_busy",
        "database_unavailable",
    }


def test_every_example_obeys_its_schema(document: dict[str, Any]) -> None:
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", DRAFT202012.create_resource(document)
    )

    def validator(*parts: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": "urn:openapi#" + pointer(*parts)}, registry=registry)

    checked = 0
    for path, method, operation in operations(document):
        bodies = [("requestBody", operation.get("requestBody"))] + [
            (f"responses/{status}", response) for status, response in operation["responses"].items()
        ]
        for where, body in bodies:
            for media_type, content in (body or {}).get("content", {}).items():
                at = ("paths", path, method, *where.split("/"), "content", media_type)
                check = validator(*at, "schema")
                for name, example in content.get("examples", {}).items():
                    check.validate(example["value"])
                    checked += 1
                    assert name
                schema = content["schema"]
                if "$ref" in schema:
                    named = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
                    for example in named.get("examples", ()):
                        check.validate(example)
                        checked += 1
    assert checked >= 20


def test_a_standard_validator_accepts_every_valid_amount(document: dict[str, Any]) -> None:
    """Tools validate requests with ordinary JSON Schema validators, which compute in
    binary floating point: every amount the service accepts must pass one, as a number
    and as a string."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", DRAFT202012.create_resource(document)
    )
    body = Draft202012Validator(
        {"$ref": "urn:openapi#/components/schemas/OperationRequest"}, registry=registry
    )
    for cents in [*range(1, 2000), 999_999_999_999_999]:
        text = f"{cents // 100}.{cents % 100:02d}"
        for amount in (float(text), text):
            body.validate({"operation": "DEPOSIT", "amount": amount})
    # Of the other currencies' (none to four digits), the largest and smallest.
    for amount in ("999999999999999", 999_999_999_999_999, "0.0001", "0.001", "99999999999.9999"):
        body.validate({"operation": "DEPOSIT", "amount": amount})
    # Beyond any currency: the schema refuses them too (the rest of a currency's rules, its
    # digits and its maximum, are the amount's description: schema_valid_... hooks).
    for refused in (0, -1, "0.00", "1e3", "0.00001", "1000000000000000", 10**15):
        assert not body.is_valid({"operation": "DEPOSIT", "amount": refused}), refused


def test_a_history_cursor_is_described_by_its_pattern(
    document: dict[str, Any], client: httpx.Client, wallet: str
) -> None:
    """Every schema-valid cursor is accepted (a page, maybe empty); the cursors the service
    hands out match the schema."""
    (cursor,) = (
        parameter
        for parameter in document["paths"]["/api/v1/wallets/{wallet_uuid}/operations"]["get"][
            "parameters"
        ]
        if parameter["name"] == "cursor"
    )
    pattern = re.compile(cursor["schema"]["pattern"])
    for _ in range(3):
        client.post(
            f"/api/v1/wallets/{wallet}/operation", json={"operation": "DEPOSIT", "amount": 1}
        )
    page = client.get(f"/api/v1/wallets/{wallet}/operations", params={"limit": 1}).json()
    assert pattern.fullmatch(page["next_cursor"])
    for valid in ("1", "7fffffffffffffff", "aaaaaaaaaaaaaaa", "abc"):
        assert pattern.fullmatch(valid)
        response = client.get(f"/api/v1/wallets/{wallet}/operations", params={"cursor": valid})
        assert response.status_code == 200, response.text
    for invalid in ("0", "01", "8000000000000000", "ABC", "o1:5", ""):
        assert not pattern.fullmatch(invalid)
        response = client.get(f"/api/v1/wallets/{wallet}/operations", params={"cursor": invalid})
        assert response.status_code == 422, invalid


#: Each keyed endpoint, and the statuses whose answer may be a replay (docs/API.md, "Safe
#: retries" and "Errors"): its success, a 400 refusal, and the 404 or 409 that transfers,
#: reversals and batches keep under the key.
REPLAYABLE = {
    ("/api/v1/wallets/create_wallet", "post"): {"201"},
    ("/api/v1/wallets/{wallet_uuid}/operation", "post"): {"200", "400"},
    ("/api/v1/operations/batch", "post"): {"200", "400", "404"},
    ("/api/v1/transfers", "post"): {"201", "400", "404"},
    ("/api/v1/reversals", "post"): {"201", "400", "409"},
    ("/api/v1/holds", "post"): {"201", "400", "404"},
    ("/api/v1/holds/{hold_id}/capture", "post"): {"200", "400", "404", "409", "422"},
    ("/api/v1/holds/{hold_id}/void", "post"): {"200", "409"},
}


def test_the_idempotent_replayed_header_is_described_on_every_keyed_endpoint(
    document: dict[str, Any],
) -> None:
    """Every endpoint that takes an Idempotency-Key describes `Idempotent-Replayed: true`
    on each response that may be a replay, and on no other."""
    keyed = {
        (path, method)
        for path, method, operation in operations(document)
        for parameter in operation.get("parameters", ())
        if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key"
    }
    assert keyed == set(REPLAYABLE)
    header = document["components"]["headers"]["Idempotent-Replayed"]
    assert header["schema"] == {"type": "string", "enum": ["true"]}
    assert "Idempotency-Key" in header["description"]
    reference = {"$ref": "#/components/headers/Idempotent-Replayed"}
    for (path, method), statuses in REPLAYABLE.items():
        responses = document["paths"][path][method]["responses"]
        described = {
            status
            for status, response in responses.items()
            if response["headers"].get("Idempotent-Replayed") == reference
        }
        assert described == statuses, (method, path)
        assert all(
            "Idempotent-Replayed" not in responses[status]["headers"]
            for status in set(responses) - statuses
        ), (method, path)


def test_a_created_wallet_is_linked_to_its_endpoints(
    document: dict[str, Any], client: httpx.Client
) -> None:
    """`create_wallet`'s 201 links to every operation on a wallet, each taking the new
    wallet's id from the response body; followed on a wallet just created, each link
    works."""
    links = document["paths"]["/api/v1/wallets/create_wallet"]["post"]["responses"]["201"]["links"]
    by_id = {
        operation["operationId"]: (path, method, operation)
        for path, method, operation in operations(document)
    }
    on_a_wallet = {
        operation["operationId"]
        for path, _, operation in operations(document)
        if re.findall(r"{(\w+)}", path) == ["wallet_uuid"]
    }
    assert {link["operationId"] for link in links.values()} == on_a_wallet
    assert on_a_wallet == {
        "get_wallet",
        "operate",
        "list_operations",
        "get_balances",
        "list_holds",
        "create_balance_monitor",
        "list_balance_monitors",
        "get_statement",
    }

    created = client.post("/api/v1/wallets/create_wallet")
    assert created.status_code == 201
    for name, link in links.items():
        assert set(link["parameters"]) == {"wallet_uuid"}, name
        expression = link["parameters"]["wallet_uuid"]
        assert expression.startswith("$response.body#/"), name
        value: Any = created.json()
        for part in expression.removeprefix("$response.body#/").split("/"):
            value = value[part]
        path, method, operation = by_id[link["operationId"]]
        body = None
        if "requestBody" in operation:
            examples = operation["requestBody"]["content"]["application/json"]["examples"]
            body = next(iter(examples.values()))["value"]
        response = client.request(method, path.format(wallet_uuid=value), json=body)
        assert response.status_code in {200, 201}, (name, response.text)  # not 404


@pytest.fixture(scope="module")
def fuzzed_database(make_database: Callable[[], TestDatabase]) -> TestDatabase:
    return migrated(make_database())


def test_schemathesis_finds_nothing_the_document_does_not_describe(
    fuzzed_database: TestDatabase, tmp_path: Path
) -> None:
    """Every phase (examples, coverage, fuzzing, stateful through the document's links) and
    every check, against the real service on a database of its own; then the ledger that
    all those requests wrote still adds up. SCHEMATHESIS_SEED replays a run."""
    seed = int(os.environ.get("SCHEMATHESIS_SEED") or random.randrange(2**32))
    print(f"Schemathesis seed: {seed} (replay with SCHEMATHESIS_SEED={seed})")
    # A long-poll of the event feed waits at most 1 s here: within the response time allowed.
    settings = {"EVENTS_WAIT_MAX_SECONDS": "1"}
    with launch_service(fuzzed_database, tmp_path / "gunicorn.log", settings).serving() as service:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "--config-file",
                str(ROOT / "tests" / "schemathesis.toml"),
                "--no-color",
                "run",
                service.base_url + "/openapi.json",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--checks",
                "all",
                "--max-examples",
                str(FUZZ_EXAMPLES_PER_OPERATION),
                "--max-response-time",
                "5",
                "--seed",
                str(seed),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"seed {seed}:\n{output}\n{service.log_text()}"
    generated = re.search(r"(\d+) generated", output)
    assert generated is not None, output
    assert int(generated.group(1)) >= FUZZ_MIN_CASES, output
    verify = subprocess.run(
        [str(Path(sys.executable).with_name("wallet-api")), "verify"],
        env={**os.environ, **fuzzed_database.environment()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_client_generated_from_the_document_works(
    document: dict[str, Any], service: ServiceProcess, tmp_path: Path
) -> None:
    """openapi-python-client turns the document into a typed client; create, deposit,
    withdraw, balance, history and a refusal go through it, each parsed as documented."""
    (tmp_path / "openapi.json").write_bytes(httpx.get(service.base_url + "/openapi.json").content)
    (tmp_path / "config.yaml").write_text(
        "post_hooks: []\nproject_name_override: wallet-client\n"
        "package_name_override: generated_wallet_client\n"
    )
    generated = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.yaml",
            "--output-path",
            "client",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout
    sys.path.insert(0, str(tmp_path / "client"))
    try:
        run_generated_client(service.base_url)
    finally:
        sys.path.remove(str(tmp_path / "client"))
        for name in [name for name in sys.modules if name.startswith("generated_wallet_client")]:
            del sys.modules[name]


def run_generated_client(base_url: str) -> None:
    package = "generated_wallet_client"
    client_module = importlib.import_module(package)
    models = importlib.import_module(f"{package}.models")
    api = f"{package}.api"
    create_wallet = importlib.import_module(f"{api}.wallets.create_wallet")
    get_wallet = importlib.import_module(f"{api}.wallets.get_wallet")
    operate = importlib.import_module(f"{api}.wallets.operate")
    list_operations = importlib.import_module(f"{api}.wallets.list_operations")

    with client_module.Client(base_url=base_url, raise_on_unexpected_status=True) as client:
        created = create_wallet.sync(client=client)
        assert isinstance(created, models.WalletCreated)
        wallet = created.wallet_uuid

        deposit = models.OperationRequest(operation=models.OperationType.DEPOSIT, amount="100.50")
        result = operate.sync(wallet, client=client, body=deposit, idempotency_key="gen-1")
        assert isinstance(result, models.OperationResult)
        assert Decimal(str(result.balance)) == Decimal("100.5")
        replay = operate.sync_detailed(wallet, client=client, body=deposit, idempotency_key="gen-1")
        assert replay.headers["Idempotent-Replayed"] == "true"

        withdraw = models.OperationRequest(operation=models.OperationType.WITHDRAW, amount=0.5)
        result = operate.sync(wallet, client=client, body=withdraw)
        assert isinstance(result, models.OperationResult)
        assert Decimal(str(result.balance)) == Decimal(100)

        balance = get_wallet.sync(wallet, client=client)
        assert isinstance(balance, models.WalletBalance)
        assert Decimal(str(balance.balance)) == Decimal(100)

        page = list_operations.sync(wallet, client=client, limit=1)
        assert isinstance(page, models.OperationsPage)
        assert [item.operation for item in page.items] == [models.OperationType.WITHDRAW]
        assert isinstance(page.next_cursor, str)
        rest = list_operations.sync(wallet, client=client, cursor=page.next_cursor)
        assert isinstance(rest, models.OperationsPage)
        assert [item.idempotency_key for item in rest.items] == ["gen-1"]

        too_much = models.OperationRequest(operation=models.OperationType.WITHDRAW, amount=1000)
        refused = operate.sync(wallet, client=client, body=too_much)
        assert type(refused).__name__ == "OperateResponse400"
        assert refused.code.value == "insufficient_funds"
        assert refused.status == 400

        missing = get_wallet.sync(uuid.uuid4(), client=client)
        assert type(missing).__name__ == "GetWalletResponse404"
        assert missing.code.value == "wallet_not_found"
