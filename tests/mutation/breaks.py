"""Targeted breaks of the promises that only the database-facing tests can guard.

Mutation tools mutate expressions; the promises below live in SQL, in transaction
boundaries and in process lifecycles, where a meaningful break is a small rewrite that a
reviewer could miss. Each break names the promise, the one place it rewrites (the text must
occur exactly once, so a break that no longer applies fails loudly instead of passing),
and the tests that must catch it. `python -m tests.mutation.run_breaks` applies each to a
copy of the repository, runs its tests there, and fails if any break survives.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Break:
    name: str
    promise: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


SERVICE = "src/wallet_api/wallets/service.py"
WRITER = "src/wallet_api/posting/writer.py"
ROWS = "src/wallet_api/posting/rows.py"
REPOSITORY = "src/wallet_api/wallets/repository.py"
DATABASE = "src/wallet_api/core/database.py"
FIRST_MIGRATION = "migrations/versions/2026_11_26_1447-bcacdfa41efd_wallets_and_ledger.py"
POSTING_REPOSITORY = "src/wallet_api/posting/repository.py"
PLAN = "src/wallet_api/posting/plan.py"
SECOND_MIGRATION = "migrations/versions/2026_11_26_1530-d0c19789eea3_idempotency_keys.py"
OWNERS = "src/wallet_api/wallets/owners.py"
IDEMPOTENCY = "src/wallet_api/core/idempotency.py"
GATE = "src/wallet_api/auth/gate.py"
KEY_STORE = "src/wallet_api/auth/store.py"
TRANSFERS_SERVICE = "src/wallet_api/transfers/service.py"

BREAKS = [
    Break(
        "stale-refusals",
        "a refusal is judged on the current balance, not on the one a worker last saw",
        ROWS,
        "            judge_again.append((section, False))\n",
        "            if not writes:\n                settled.append((part, self.outcomes[where], wallets, self.spans, {}))\n                continue\n            judge_again.append((section, False))\n",
        (
            "tests/test_serial_history.py::"
            "test_a_refusal_is_judged_on_the_balance_the_other_worker_left",
            "tests/test_serial_history.py",
        ),
    ),
    Break(
        "keyed-refusal-on-any-balance",
        "a batch holding a keyed refusal is written only on the balance it was planned on",
        ROWS,
        "        elif wallet_id in pinned:\n",
        "        elif False:\n",
        ("tests/test_serial_history.py",),
    ),
    Break(
        "range-write-without-range",
        "a batch is written only while the balance still gives its decisions",
        POSTING_REPOSITORY,
        "        HAVING count(*) = min(size) AND bool_and(\n            balance BETWEEN low AND high\n            AND balance - held BETWEEN available_low AND available_high\n            AND NOT due\n        )\n",
        "        HAVING count(*) = min(size)\n",
        ("tests/test_serial_history.py", "tests/test_concurrency.py"),
    ),
    Break(
        "lost-race-acknowledged",
        "an operation is acknowledged only when its write was applied",
        ROWS,
        "    return first is not None and first.start is not None\n",
        "    return first is not None\n",
        ("tests/test_serial_history.py", "tests/test_concurrency.py"),
    ),
    Break(
        "committed-wallets-written-again",
        "a wallet whose write committed in an earlier round is never written again",
        WRITER,
        "                    look_up = True\n                    continue\n",
        "                    look_up = True\n                    settled.clear()\n                    continue\n",
        (
            "tests/test_coalescing.py::"
            "test_a_wallet_committed_in_an_earlier_round_is_not_written_again_when_a_later_one_fails",
        ),
    ),
    Break(
        "settled-groups-retried",
        "after a failure, the queue retries and fails only the groups not settled",
        "src/wallet_api/posting/queue.py",
        "            left = [(wallet_id, items) for wallet_id, items in batch if wallet_id not in settled]\n",
        "            left = list(batch)\n",
        ("tests/unit/test_group_commit.py",),
    ),
    Break(
        "lock-timeout-fails-the-whole-batch",
        "a wallet held by another transaction does not fail the others in its batch",
        "src/wallet_api/posting/queue.py",
        "            if is_transient_error(exc) and not is_lock_timeout(exc):\n",
        "            if is_transient_error(exc):\n",
        (
            "tests/test_coalescing.py::"
            "test_a_wallet_held_by_another_transaction_does_not_hold_up_the_others_in_its_batch",
        ),
    ),
    Break(
        "no-row-lock",
        "the one-transaction-per-operation path holds the wallet's row lock",
        POSTING_REPOSITORY,
        "        ORDER BY w.id FOR UPDATE OF w\n    )\n    SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at",
        "        ORDER BY w.id\n    )\n    SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at",
        ("tests/test_concurrency.py::test_concurrent_deposits_each_report_their_own_balance",),
    ),
    Break(
        "commit-failure-answered-as-success",
        "nothing is acknowledged before its commit (the row-locking transaction)",
        DATABASE,
        "            await transaction.commit()\n",
        "            try:\n"
        "                await transaction.commit()\n"
        "            except Exception:\n"
        "                await transaction.rollback()\n",
        (
            "tests/test_coalescing.py::"
            "test_a_commit_that_fails_fails_only_the_operation_that_broke_it",
        ),
    ),
    Break(
        "unknown-outcome-called-not-applied",
        "a commit cut off in flight is outcome_unknown, never 503 not applied",
        DATABASE,
        "    return is_connection_lost(exc)\n",
        "    return False\n",
        ("tests/test_faults.py",),
    ),
    Break(
        "pool-not-replaced",
        "once the server went away, a worker replaces all its connections, not one per failure",
        DATABASE,
        "                if server_went_away(exc):\n",
        "                if False:\n",
        (
            "tests/test_faults.py::"
            "test_a_fatal_error_on_idle_connections_is_never_a_500_and_they_are_all_replaced",
        ),
    ),
    Break(
        "pool-expired-on-any-error",
        "an ordinary error (a key's unique violation) costs no connection",
        DATABASE,
        "            if is_connection_lost(exc) or is_read_only(exc):\n",
        "            if True:\n",
        ("tests/test_idempotency.py",),
    ),
    Break(
        "coalescer-falls-through",
        "a batch whose outcome is unknown fails only itself; the queue behind it runs",
        "src/wallet_api/posting/queue.py",
        "            _fail(_items(batch), exc, OutcomeUnknown)\n            return\n",
        "            _fail(_items(batch), exc, OutcomeUnknown)\n",
        ("tests/unit/test_group_commit.py", "tests/test_faults.py"),
    ),
    Break(
        "no-client-timeout",
        "DB_STATEMENT_TIMEOUT_MS=0 keeps the client's own limit",
        DATABASE,
        "        if not unbounded:\n",
        "        if not unbounded and settings.db_statement_timeout_ms:\n",
        (
            "tests/test_faults.py::"
            "test_without_a_statement_timeout_a_silent_database_is_answered_within_the_client_timeout",
        ),
    ),
    Break(
        "keys-purged-early",
        "an Idempotency-Key is kept for its whole retention",
        SERVICE,
        "connection, older_than_seconds=older_than_seconds, batch=PURGE_BATCH",
        "connection, older_than_seconds=0, batch=PURGE_BATCH",
        ("tests/test_idempotency.py",),
    ),
    Break(
        "key-race-not-retried",
        "concurrent requests with one key apply once and all get its outcome",
        DATABASE,
        'and exc.constraint_name == "pk_idempotency_keys"',
        'and exc.constraint_name == "no_such_constraint"',
        ("tests/test_idempotency.py",),
    ),
    Break(
        "downgrade-leaves-a-column",
        "each migration's downgrade restores the schema before it",
        SECOND_MIGRATION,
        '    op.drop_column("wallet_operations", "idempotency_key")\n',
        "",
        (
            "tests/test_migrations.py::"
            "test_each_migration_downgrades_exactly_to_the_schema_before_it",
        ),
    ),
    Break(
        "migration-without-two-checks",
        "the migrations build every CHECK constraint the models declare",
        FIRST_MIGRATION,
        '        sa.CheckConstraint("amount > 0", name=op.f("ck_wallet_operations_amount_positive")),\n'
        "        sa.CheckConstraint(\n"
        '            "balance_after >= 0", name=op.f("ck_wallet_operations_balance_after_not_negative")\n'
        "        ),\n",
        "",
        ("tests/test_migrations.py::test_migrations_build_exactly_the_schema_the_models_describe",),
    ),
    Break(
        "balance-may-go-negative",
        "the database refuses a negative balance whatever writes it",
        FIRST_MIGRATION,
        '        sa.CheckConstraint("balance >= 0", name=op.f("ck_wallets_balance_not_negative")),\n',
        "",
        ("tests/test_migrations.py::test_migrations_build_exactly_the_schema_the_models_describe",),
    ),
    Break(
        "verifier-blind-to-negatives",
        "the verifier reports a negative balance",
        REPOSITORY,
        "        SELECT id FROM wallets WHERE balance < 0\n"
        "        UNION SELECT wallet_id FROM wallet_operations WHERE balance_after < 0\n",
        "        SELECT id FROM wallets WHERE false\n"
        "        UNION SELECT wallet_id FROM wallet_operations WHERE false\n",
        ("tests/test_verifier.py",),
    ),
    Break(
        "no-drain",
        "requests in flight at SIGTERM are completed and answered",
        "gunicorn.conf.py",
        "graceful_timeout = _settings.graceful_timeout\n",
        "graceful_timeout = 0\n",
        ("tests/test_shutdown.py",),
    ),
    Break(
        "outcome-series-missing",
        "every operation outcome has a metrics series from the start",
        SERVICE,
        "        declare_operation_outcomes(",
        "        (lambda *_: None)(",
        ("tests/test_operability.py",),
    ),
    Break(
        "cursor-schema-too-wide",
        "every history cursor the schema admits is accepted",
        "src/wallet_api/wallets/cursors.py",
        'CURSOR_PATTERN = r"^(?:[1-9a-f][0-9a-f]{0,14}|[1-7][0-9a-f]{15})$"',
        'CURSOR_PATTERN = r"^[0-9a-f]{1,16}$"',
        ("tests/test_openapi.py",),
    ),
    Break(
        "transfer-rows-unlocked",
        "a batch of transfers is planned on balances held under the rows' locks",
        POSTING_REPOSITORY,
        "ORDER BY w.id FOR UPDATE OF w\n    )\n    SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at",
        "ORDER BY w.id\n    )\n    SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at",
        ("tests/test_transfers.py",),
    ),
    Break(
        "transfer-one-leg-recorded",
        "both legs of a transfer are in the ledger",
        ROWS,
        "        for leg, balance in zip(entry.legs, judged, strict=True):\n",
        "        for leg, balance in list(zip(entry.legs, judged, strict=True))[:1]:\n",
        ("tests/test_transfers.py",),
    ),
    Break(
        "transfer-overdraws",
        "a transfer the source cannot cover is refused with 400 and changes nothing",
        PLAN,
        "    if amount > available:\n",
        "    if amount > available + 10**15:\n",
        ("tests/test_transfers.py",),
    ),
    Break(
        "transfer-key-not-kept",
        "an Idempotency-Key replays the transfer instead of moving money again",
        WRITER,
        "                    isinstance(outcome, Posted) or kept(entry, outcome)\n",
        "                    False\n",
        ("tests/test_transfers.py",),
    ),
    Break(
        "reversal-repeatable",
        "an entry is reversed at most once, a second reversal answered 409",
        WRITER,
        "await repository.reversed_rows(connection, reversing) if reversing else set()",
        "set()",
        ("tests/test_reversals.py",),
    ),
    Break(
        "verify-ignores-transfers",
        "verify catches a transfer whose legs do not match",
        REPOSITORY,
        "(SELECT count(*) FROM unmatched) AS unmatched_transfers",
        "0 AS unmatched_transfers",
        ("tests/test_verifier.py::test_the_verifier_catches_a_transfer_that_creates_money",),
    ),
    Break(
        "transfer-fast-path-differs",
        "the transfer fast path answers as the route does (its Location header included)",
        "src/wallet_api/transfers/fast_path.py",
        "    return created_response(*result)\n",
        "    response = created_response(*result)\n"
        '    del response.headers["location"]\n'
        "    return response\n",
        ("tests/test_fast_path.py",),
    ),
    Break(
        "owners-unchecked",
        "a wallet of another owner is answered as an unknown one",
        OWNERS,
        "        return {wallet_id for wallet_id in wallet_ids if self._owners.get(wallet_id) != owner}\n",
        "        return set()\n",
        ("tests/test_auth.py::test_another_owners_wallet_is_answered_as_an_unknown_one",),
    ),
    Break(
        "transfer-shows-payee-balance",
        "a payment does not show the payee's balance to the payer",
        TRANSFERS_SERVICE,
        "                    None if hide_destination else outcome.balances[1],\n",
        "                    outcome.balances[1],\n",
        ("tests/test_auth.py::test_transfers_credit_another_owner_without_showing_their_balance",),
    ),
    Break(
        "idempotency-keys-shared-by-owners",
        "two owners' equal Idempotency-Keys are two keys",
        IDEMPOTENCY,
        '    return f"{owner}\\t{key}"\n',
        "    return key\n",
        ("tests/test_auth.py::test_idempotency_keys_are_scoped_per_owner",),
    ),
    Break(
        "revocation-never-refreshed",
        "a revocation reaches every worker within AUTH_KEYS_REFRESH_SECONDS",
        KEY_STORE,
        "                self._keys = {key.id: key for key in keys}\n",
        "                pass\n",
        ("tests/test_auth.py::test_revocation_reaches_both_workers_within_the_refresh_interval",),
    ),
    Break(
        "rate-limit-per-worker",
        "a key's rate limit holds across the workers of an instance",
        GATE,
        "    local = LocalLimiter(os.environ.get(RATE_TABLE_VARIABLE))\n",
        "    local = LocalLimiter(None)\n",
        ("tests/test_rate_limits.py::test_429_after_the_burst_across_both_workers_then_recovery",),
    ),
    Break(
        "scope-unchecked",
        "a read-only key cannot write",
        GATE,
        "        if needed not in key.scopes:\n",
        "        if False:\n",
        ("tests/test_auth.py::test_a_key_without_the_scope_is_refused_with_403",),
    ),
    Break(
        "refusal-tells-payee-balance",
        "a refused payment does not tell the payee's balance",
        "src/wallet_api/transfers/exceptions.py",
        "    balance = None if leg.wallet_id in hidden else refusal.balance\n",
        "    balance = refusal.balance\n",
        ("tests/test_auth.py::test_a_refused_payment_does_not_tell_the_payees_balance",),
    ),
    Break(
        "atomic-batch-locks-foreign-wallets",
        "an atomic batch does not lock another owner's wallet",
        WRITER,
        "            mine = sorted(\n"
        "                wallet_id for wallet_id in wallets_named(entries) if wallet_id not in unknown\n"
        "            )\n",
        "            mine = sorted(wallets_named(entries))\n",
        ("tests/test_auth.py::test_an_atomic_batch_does_not_lock_another_owners_wallet",),
    ),
    Break(
        "verified-header-trusted-forever",
        "a header verified once is trusted only while its key's row is the current one",
        GATE,
        "        if verified is not None and self.keys.is_current(verified[0]):\n",
        "        if verified is not None:\n",
        ("tests/test_auth.py::test_revocation_reaches_both_workers_within_the_refresh_interval",),
    ),
    Break(
        "entries-range-unchecked",
        "a part (a transfer's two wallets) is written in one statement only when every one of its wallets' balances lets it apply",
        POSTING_REPOSITORY,
        "        HAVING count(*) = min(size) AND bool_and(\n",
        "        HAVING count(*) = min(size) AND bool_or(\n",
        ("tests/test_transfers.py", "tests/test_range_write.py"),
    ),
    Break(
        "unknown-env-file-names-unsaid",
        "a name of `.env` that is not a setting is named in a warning, not ignored silently",
        "src/wallet_api/core/config.py",
        "    for name in dotenv:\n",
        "    for name in ():\n",
        (
            "tests/test_command_line.py::"
            "test_an_unknown_name_in_env_file_is_named_once_with_the_setting_it_resembles",
        ),
    ),
    Break(
        "unknown-names-said-at-every-load",
        "the unknown names are said once a start, not by every command or process that loads",
        "src/wallet_api/core/config.py",
        "    if os.environ.get(UNKNOWN_REPORTED_VARIABLE):\n",
        "    if False:\n",
        (
            "tests/test_command_line.py::test_serve_names_an_unknown_variable_once_per_start_not_per_worker",
        ),
    ),
    Break(
        "malformed-json-without-errors",
        "a body that is not JSON gets a validation_error listing the problem in `errors`",
        "src/wallet_api/core/requests.py",
        '            "The request body is not valid JSON.", errors=[_error(["body"], _not_json(exc))]\n',
        '            "The request body is not valid JSON."\n',
        ("tests/test_validation.py::test_malformed_body_is_422_and_changes_nothing",),
    ),
    Break(
        "wrong-content-type-without-errors",
        "a body of another content type gets a validation_error listing the header in `errors`",
        "src/wallet_api/core/requests.py",
        '                    ["header", "content-type"],\n',
        '                    ["body"],\n',
        ("tests/test_validation.py::test_wrong_content_type_is_422",),
    ),
    Break(
        "docs-assets-from-cdn",
        "/docs and /redoc load nothing from outside the service (they work without internet)",
        "src/wallet_api/core/docs.py",
        '            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",\n',
        '            redoc_js_url="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js",\n',
        ("tests/test_docs_pages.py",),
    ),
    Break(
        "terminate-released-connection",
        "a connection cut under a statement is reported lost, and the stale pool replaced with it",
        DATABASE,
        "                with suppress(asyncpg.InterfaceError):\n"
        "                    connection.terminate()\n",
        "                connection.terminate()\n",
        ("tests/test_failover_pool.py",),
    ),
    Break(
        "deposit-without-its-scope",
        "only a key with the scope `deposit` creates money (docs/SECURITY.md)",
        "src/wallet_api/wallets/fast_path.py",
        "    if request.operation is OperationType.DEPOSIT:\n",
        "    if request.operation is OperationType.DEPOSIT and False:\n",
        ("tests/test_auth.py::test_creating_money_needs_the_deposit_scope",),
    ),
    Break(
        "batch-deposit-without-its-scope",
        "a batch holding a deposit needs the scope `deposit`, atomic or not",
        "src/wallet_api/wallets/router.py",
        "    if any(item.operation is OperationType.DEPOSIT for item in body.operations):\n",
        "    if body.operations[0].operation is OperationType.DEPOSIT:\n",
        ("tests/test_auth.py::test_creating_money_needs_the_deposit_scope",),
    ),
    Break(
        "default-key-deposits",
        "a key made without naming scopes may not create money",
        "src/wallet_api/auth/keys.py",
        "DEFAULT_SCOPES = (Scope.READ, Scope.WRITE)\n",
        "DEFAULT_SCOPES = tuple(Scope)\n",
        ("tests/test_auth.py::test_creating_money_needs_the_deposit_scope",),
    ),
    Break(
        "ownerless-wallet-asks-the-database",
        "a wallet without an owner is refused as fast as a missing one (both remembered)",
        OWNERS,
        "            if wallet_owner is None:  # missing, or without an owner: out of reach alike\n",
        "            if wallet_id not in found:\n",
        (
            "tests/test_auth.py::test_a_wallet_without_an_owner_is_refused_as_a_missing_one_is_without_the_database",
        ),
    ),
    Break(
        "listeners-judged-by-configuration",
        "without authentication, the sockets Gunicorn listens on are judged, however they came",
        "gunicorn.conf.py",
        "    if server.LISTENERS and not _refuse_to_serve_everyone(\n",
        "    if not server.cfg.bind and not _refuse_to_serve_everyone(\n",
        ("tests/test_listening.py",),
    ),
    Break(
        "entrypoint-names-unknown-settings-twice",
        "the image's entrypoint names an unknown setting once a start (not again in Gunicorn)",
        "docker/entrypoint.sh",
        "    export WALLET_API_UNKNOWN_SETTINGS_REPORTED=1\nfi\n",
        "fi\n",
        (
            "tests/test_command_line.py::"
            "test_the_container_entrypoint_names_an_unknown_variable_once_per_start",
        ),
    ),
    Break(
        "batch-retry-claims-replay",
        "a keyed batch's retry that applies items for the first time is not marked a replay",
        SERVICE,
        "        replayed = not first_request and all(\n",
        "        replayed = not first_request or all(\n",
        (
            "tests/test_faults.py::"
            "test_a_batch_cut_after_claiming_its_key_is_applied_by_its_retry_not_replayed",
        ),
    ),
    Break(
        "batch-replay-with-unknown-wallet-not-a-replay",
        "a batch's replay is a replay although an item's wallet does not exist (nothing stored)",
        SERVICE,
        "            isinstance(outcome, Replay | WalletNotFound) for outcome in answered\n",
        "            isinstance(outcome, Replay) for outcome in answered\n",
        ("tests/test_batch.py::test_a_replayed_batch_with_an_unknown_wallet_is_still_a_replay",),
    ),
    Break(
        "expiry-not-to-come-accepted",
        "`keys create --expires` refuses a key that would be expired from the start (exit 2)",
        "src/wallet_api/cli/keys.py",
        "        if args.expires is not None and args.expires.moment <= datetime.now(UTC):\n",
        "        if False:\n",
        ("tests/test_command_line.py::test_keys_create_refuses_an_expiry_that_is_not_to_come",),
    ),
    Break(
        "unknown-key-id-exit-1",
        "`keys revoke` of an id that does not exist is a failure to fix: exit status 2",
        "src/wallet_api/cli/keys.py",
        "        return 2\n    print(json.dumps(_shown(revoked), indent=2))\n",
        "        return 1\n    print(json.dumps(_shown(revoked), indent=2))\n",
        (
            "tests/test_command_line.py::"
            "test_keys_revoke_of_an_unknown_id_is_one_line_with_exit_status_2",
        ),
    ),
    Break(
        "revocation-delay-not-the-configured-one",
        "`keys revoke` says when it takes effect, with the configured AUTH_KEYS_REFRESH_SECONDS",
        "src/wallet_api/cli/keys.py",
        "    every = load_settings_or_exit().auth_keys_refresh_seconds\n",
        "    every = 2.0\n",
        ("tests/test_command_line.py::test_keys_revoke_says_when_the_revocation_takes_effect",),
    ),
    Break(
        "empty-autogenerated-revision-written",
        "`alembic revision --autogenerate` with nothing to change writes no file",
        "migrations/env.py",
        "        directives[:] = []\n",
        "        pass\n",
        (
            "tests/test_migrations.py::"
            "test_autogenerate_with_nothing_to_change_writes_no_revision_and_says_so",
        ),
    ),
    Break(
        "replayed-transfer-without-location",
        "a replayed 201 transfer names the transfer in Location as the first answer did",
        "src/wallet_api/transfers/router.py",
        "        return replayed_response(result)\n",
        "        return result.response()\n",
        ("tests/test_transfers.py::test_an_idempotency_key_replays_the_transfer_and_its_refusal",),
    ),
    Break(
        "held-wallet-fails-the-whole-batch",
        "a batch item whose wallet another transaction holds is wallet_busy; the others apply",
        SERVICE,
        "            if not is_lock_timeout(exc):\n                raise\n",
        "            if True:\n                raise\n",
        (
            "tests/test_batch.py::"
            "test_a_batch_naming_a_held_wallet_answers_its_operations_wallet_busy_and_applies_the_rest",
        ),
    ),
    Break(
        "held-wallet-in-a-batch-not-logged",
        "a batch's held wallet is logged as a 503 is: one WARNING line",
        SERVICE,
        "            log_unavailable(wallet_held(cause))  # one line for the wallet, as for a 503\n",
        "            pass\n",
        (
            "tests/test_batch.py::"
            "test_a_batch_naming_a_held_wallet_answers_its_operations_wallet_busy_and_applies_the_rest",
        ),
    ),
    Break(
        "lock-timeout-answered-database-unavailable",
        "a lock timeout reaching the error mapping (an atomic batch) is 503 wallet_busy",
        "src/wallet_api/core/errors.py",
        "    if is_lock_timeout(exc):\n        # Another transaction held a row",
        "    if False:\n        # Another transaction held a row",
        (
            "tests/test_batch.py::"
            "test_an_atomic_batch_naming_a_held_wallet_is_wallet_busy_and_applies_nothing",
        ),
    ),
    Break(
        "unqueued-operation-lock-timeout-unmapped",
        "without coalescing, an operation on a held wallet is wallet_busy as the queue answers it",
        WRITER,
        "            if is_lock_timeout(exc):\n                raise wallet_held(exc) from exc\n",
        "            if False:\n                raise wallet_held(exc) from exc\n",
        (
            "tests/test_batch.py::"
            "test_a_batch_naming_a_held_wallet_answers_its_operations_wallet_busy_and_applies_the_rest",
        ),
    ),
    Break(
        "verify-transfer-amounts-unchecked",
        "verify names a transfer whose legs out and in differ in amount (net zero by its reversal)",
        REPOSITORY,
        "OR amounts <> 1 OR NOT named",
        "OR NOT named",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[legs-of-two-amounts]",
        ),
    ),
    Break(
        "verify-transfer-outs-uncounted",
        "verify names a transfer with more than one leg out",
        REPOSITORY,
        "OR outs <> 1 OR ins",
        "OR ins",
        ("tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[two-legs-out]",),
    ),
    Break(
        "verify-transfer-ins-uncounted",
        "verify names a transfer with more than one leg in",
        REPOSITORY,
        "OR ins <> 1 OR amounts",
        "OR amounts",
        ("tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[two-legs-in]",),
    ),
    Break(
        "verify-transfer-reversal-net-unchecked",
        "verify names a transfer whose reversal does not net to zero",
        REPOSITORY,
        "WHERE net <> 0 OR outs",
        "WHERE outs",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[reversals-not-netting-to-zero]",
        ),
    ),
    Break(
        "verify-transfer-leg-naming-itself",
        "verify names a transfer whose legs do not name each other's wallet",
        REPOSITORY,
        "OR NOT named\n",
        "\n",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[legs-name-their-own-wallets]",
        ),
    ),
    Break(
        "verify-transfer-third-wallet-named",
        "verify names a transfer whose leg names a wallet outside it",
        REPOSITORY,
        "           OR NOT (wallets @> counterparties AND counterparties @> wallets)\n",
        "",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[leg-names-a-third-wallet]",
        ),
    ),
    Break(
        "verify-reversal-amount-unchecked",
        "verify reports a reversal larger than its entry",
        REPOSITORY,
        "WHERE r.amount > o.amount OR r.wallet_id",
        "WHERE r.wallet_id",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[reversal-larger-than-its-entry]",
            "tests/test_verifier.py::test_the_verifier_catches_a_reversal_larger_than_its_entry",
        ),
    ),
    Break(
        "verify-reversal-wallet-unchecked",
        "verify reports a reversal on another wallet than its entry's",
        REPOSITORY,
        "OR r.wallet_id <> o.wallet_id\n",
        "\n",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[reversal-on-another-wallet]",
        ),
    ),
    Break(
        "verify-reversal-direction-unchecked",
        "verify reports a reversal in its entry's direction",
        REPOSITORY,
        "           OR (r.operation IN ({credits})) = (o.operation IN ({credits}))\n",
        "",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[reversal-in-the-same-direction]",
        ),
    ),
    Break(
        "verifier-blind-to-negative-history",
        "the verifier reports a balance_after below zero, even if the balance is not",
        REPOSITORY,
        "        UNION SELECT wallet_id FROM wallet_operations WHERE balance_after < 0\n",
        "",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[negative-on-the-way]",
        ),
    ),
    Break(
        "verify-wallet-without-ledger-unchecked",
        "verify reports a balance that is not zero on a wallet without a ledger",
        REPOSITORY,
        "FROM wallets w LEFT JOIN sums s",
        "FROM wallets w JOIN sums s",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[balances-not-their-ledgers]",
        ),
    ),
    Break(
        "verifier-blind-to-balance-mismatches",
        "verify reports a balance that is not its ledger's sum",
        REPOSITORY,
        "(SELECT count(*) FROM mismatched) AS balance_mismatches",
        "0 AS balance_mismatches",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[balances-not-their-ledgers]",
            "tests/test_verifier.py::test_the_verifier_passes_a_consistent_ledger_and_catches_a_corrupted_balance",
        ),
    ),
    Break(
        "verifier-blind-to-chain-breaks",
        "verify reports a balance_after that is not the one before plus its amount",
        REPOSITORY,
        "(SELECT count(*) FROM breaks) AS chain_breaks",
        "0 AS chain_breaks",
        (
            "tests/test_verifier.py::test_the_verifier_catches_each_rule_broken_alone[chain-of-balances-broken]",
            "tests/test_verifier.py::test_the_verifier_catches_a_broken_chain_of_balances",
        ),
    ),
    Break(
        "verify-money-created-unreported",
        "verify reports the money a transfer made (money_created)",
        REPOSITORY,
        'money_created_by_currency=orjson.loads(row["money_created"])',
        "money_created_by_currency={}",
        ("tests/test_verifier.py::test_the_verifier_catches_a_transfer_that_creates_money",),
    ),
    Break(
        "worker-judged-on-the-arbiters-settings",
        "a worker is judged on the settings it will run with (.env read again), not the start's",
        "gunicorn.conf.py",
        "        settings = Settings()\n",
        "        settings = _settings\n",
        (
            "tests/test_listening.py::test_a_worker_started_after_env_changed_is_judged_on_what_it_will_run_with",
        ),
    ),
    Break(
        "transfer-fingerprint-without-description",
        "a transfer's Idempotency-Key sent with another description is refused, not replayed",
        "src/wallet_api/transfers/schemas.py",
        "                canonical_amount(self.amount),\n                self.description,\n",
        "                canonical_amount(self.amount),\n",
        (
            "tests/test_transfers.py::"
            "test_a_transfer_key_sent_with_another_transfer_is_refused_and_changes_nothing",
        ),
    ),
    Break(
        "transfer-fingerprint-without-destination",
        "a transfer's Idempotency-Key sent with another payee is refused, not replayed",
        "src/wallet_api/transfers/schemas.py",
        "                str(self.to_wallet_uuid),\n                canonical_amount(self.amount),\n",
        "                canonical_amount(self.amount),\n",
        (
            "tests/test_transfers.py::"
            "test_a_transfer_key_sent_with_another_transfer_is_refused_and_changes_nothing",
        ),
    ),
    Break(
        "transfer-fingerprint-without-source",
        "a transfer's Idempotency-Key sent with another payer is refused, not replayed",
        "src/wallet_api/transfers/schemas.py",
        "                str(self.from_wallet_uuid),\n                str(self.to_wallet_uuid),\n",
        "                str(self.to_wallet_uuid),\n",
        (
            "tests/test_transfers.py::"
            "test_a_transfer_key_sent_with_another_transfer_is_refused_and_changes_nothing",
        ),
    ),
    Break(
        "transfer-idempotency-keys-shared-by-owners",
        "two owners' equal Idempotency-Keys on transfers are two keys",
        "src/wallet_api/transfers/router.py",
        "        idempotency_key=scoped_key(owner, idempotency_key),\n",
        "        idempotency_key=idempotency_key,\n",
        (
            "tests/test_idempotency.py::"
            "test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint[transfer]",
        ),
    ),
    Break(
        "reversal-idempotency-keys-shared-by-owners",
        "two owners' equal Idempotency-Keys on reversals are two keys",
        "src/wallet_api/reversals/router.py",
        "        idempotency_key=scoped_key(owner, idempotency_key),\n",
        "        idempotency_key=idempotency_key,\n",
        (
            "tests/test_idempotency.py::"
            "test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint[reversal]",
        ),
    ),
    Break(
        "batch-idempotency-keys-shared-by-owners",
        "two owners' equal Idempotency-Keys on batches (atomic or not) are two keys",
        "src/wallet_api/wallets/router.py",
        "    idempotency_key = scoped_key(owner, idempotency_key)\n",
        "",
        (
            "tests/test_idempotency.py::"
            "test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint[batch]",
            "tests/test_idempotency.py::"
            "test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint[atomic batch]",
        ),
    ),
    Break(
        "operation-idempotency-keys-shared-by-owners",
        "two owners' equal Idempotency-Keys on operations are two keys",
        "src/wallet_api/wallets/router.py",
        "        idempotency_key=scoped_key(owner, idempotency_key),\n"
        "        api_key_id=key_id_of(request.scope),\n",
        "        idempotency_key=idempotency_key,\n        api_key_id=key_id_of(request.scope),\n",
        (
            "tests/test_idempotency.py::"
            "test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint[operation]",
        ),
    ),
    Break(
        "create-wallet-idempotency-keys-shared-by-owners",
        "two owners' equal Idempotency-Keys on create_wallet are two keys",
        "src/wallet_api/wallets/router.py",
        "        currency=body.currency,\n        metadata=metadata,\n"
        "        idempotency_key=scoped_key(owner, idempotency_key),\n",
        "        currency=body.currency,\n        metadata=metadata,\n"
        "        idempotency_key=idempotency_key,\n",
        (
            "tests/test_idempotency.py::"
            "test_two_owners_equal_keys_are_two_keys_on_every_keyed_endpoint[create_wallet]",
        ),
    ),
    Break(
        "theft-into-own-wallet",
        "a transfer debits only the caller's own wallet, also when it credits the caller's own",
        TRANSFERS_SERVICE,
        "reachable=source not in foreign\n",
        "reachable=source not in foreign or destination not in foreign\n",
        ("tests/test_owners.py::test_a_key_cannot_move_another_owners_money_into_its_own_wallet",),
    ),
    Break(
        "refund-by-the-named-entrys-owner",
        "a transfer is refunded by its payee only, whichever leg is named (not the payer's own)",
        "src/wallet_api/reversals/service.py",
        "    if named.operation not in _COMPENSATION:\n        return named.wallet_id\n",
        "    if named.operation:\n        return named.wallet_id\n",
        (
            "tests/test_owners.py::"
            "test_the_payer_cannot_refund_itself_by_naming_its_own_transfer_out_entry",
        ),
    ),
    Break(
        "refund-refusal-tells-payer-balance",
        "a refused refund (over the payer's limit) leaves the payer's balance out",
        "src/wallet_api/reversals/service.py",
        'verb="reverse", exponent=currency.exponent, hidden=foreign\n',
        'verb="reverse", exponent=currency.exponent\n',
        ("tests/test_owners.py::test_a_refused_refund_leaves_the_payers_balance_out",),
    ),
    Break(
        "old-unknown-entry-read-before-answering",
        "an out-of-reach entry is read again behind the answer, never before it (same time as another owner's)",
        OWNERS,
        "            self._refresh = asyncio.create_task(self._read_due())\n",
        "            await self._read_due()\n",
        (
            "tests/test_auth.py::test_a_wallet_without_an_owner_is_refused_as_a_missing_one_is_without_the_database",
        ),
    ),
    Break(
        "worker-sockets-unjudged",
        "a worker judges its own sockets: after a reload and under reuse_port, no open door",
        "gunicorn.conf.py",
        "        and _exposed([listener.sock for listener in worker.sockets])\n",
        "        and not worker.sockets\n",
        (
            "tests/test_listening.py::test_a_reload_onto_a_network_address_stops_the_server",
            "tests/test_listening.py::test_reuse_port_on_a_network_address_is_refused",
        ),
    ),
    Break(
        "batch-fingerprint-without-atomic",
        "a batch's Idempotency-Key sent with the other atomic flag is refused, not replayed",
        "src/wallet_api/wallets/schemas.py",
        '        return "\\n".join([f"atomic={self.atomic}", *lines])\n',
        '        return "\\n".join(lines)\n',
        (
            "tests/test_batch.py::"
            "test_a_batch_key_sent_again_with_the_other_atomic_flag_is_refused_and_changes_nothing",
        ),
    ),
    Break(
        "batch-item-key-without-the-space",
        "a batch item's derived key (KEY #index) is apart from every key a client can send",
        SERVICE,
        'idempotency_key=f"{idempotency_key} #{index}",',
        'idempotency_key=f"{idempotency_key}#{index}",',
        ("tests/test_batch.py::test_a_client_key_never_names_a_batch_items_derived_key",),
    ),
    Break(
        "reversal-needs-deposit",
        "reversing one's own withdrawal needs only `write`, not `deposit`",
        "src/wallet_api/reversals/router.py",
        "    owner = owner_of(request.scope)\n    result = await reversal_service(request).reverse(\n",
        "    owner = owner_of(request.scope)\n"
        "    from wallet_api.auth.gate import require_deposit\n\n"
        "    require_deposit(request.scope)\n"
        "    result = await reversal_service(request).reverse(\n",
        ("tests/test_auth.py::test_reversing_its_owners_withdrawal_needs_only_write",),
    ),
    Break(
        "key-secret-stored-in-clear",
        "only the secret's SHA-256 is stored, never the secret",
        "src/wallet_api/auth/keys.py",
        "    return hashlib.sha256(secret.encode()).hexdigest()\n",
        "    return secret\n",
        ("tests/test_auth.py::test_only_the_secrets_sha256_is_stored",),
    ),
    Break(
        "unmatched-route-labelled-by-path",
        "metrics carry no wallet ids: a request without a route is labelled `unmatched`, not by its path",
        "src/wallet_api/core/metrics.py",
        '    route = getattr(scope.get("route"), "path", None) or "unmatched"\n',
        '    route = getattr(scope.get("route"), "path", None) or scope["path"]\n',
        ("tests/test_auth.py::test_metrics_carry_no_wallet_ids_and_no_keys",),
    ),
    Break(
        "threads-count-unbounded",
        "THREADS_COUNT is validated: a value out of range stops the command and the server in one line",
        "src/wallet_api/core/config.py",
        "    threads_count: int = Field(1, ge=1, le=1024)\n",
        "    threads_count: int = 1\n",
        ("tests/test_command_line.py::test_a_bad_threads_count_is_one_line_with_exit_status_2",),
    ),
    Break(
        "threads-count-multiplies-workers",
        "THREADS_COUNT changes nothing (Uvicorn workers ignore Gunicorn's threads)",
        "gunicorn.conf.py",
        "workers = _settings.workers_count\n",
        "workers = _settings.workers_count * _settings.threads_count\n",
        ("tests/test_command_line.py::test_threads_count_changes_nothing",),
    ),
    Break(
        "password-in-the-server-name",
        "DB_PASSWORD is never printed: the one-line causes name the server without credentials",
        "src/wallet_api/cli/database.py",
        '    return f"PostgreSQL at {host}:{settings.db_port}"\n',
        '    return f"PostgreSQL at {settings.database_url.render_as_string(hide_password=False)}"\n',
        ("tests/test_command_line.py::test_db_password_and_redis_url_are_never_printed",),
    ),
    Break(
        "redis-client-in-the-warning",
        "REDIS_URL is never printed: the warning of a failing Redis names the error, not the client",
        "src/wallet_api/auth/limits.py",
        "            repr(error) if str(error) else type(error).__name__,\n",
        '            f"{self._client!r}: {error!r}",\n',
        ("tests/test_command_line.py::test_db_password_and_redis_url_are_never_printed",),
    ),
    Break(
        "env-file-wins-over-the-environment",
        "settings come from the environment or `.env`; the environment wins",
        "src/wallet_api/core/config.py",
        '        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True\n    )\n',
        '        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True\n    )\n\n'
        "    @classmethod\n"
        "    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # type: ignore[no-untyped-def,override]\n"
        "        return init_settings, dotenv_settings, env_settings, file_secret_settings\n",
        (
            "tests/test_command_line.py::"
            "test_the_environment_wins_over_env_and_a_mistyped_name_changes_nothing",
        ),
    ),
    Break(
        "mistyped-name-taken-for-the-setting",
        "a misspelt name is ignored: the setting it was meant for keeps its value from elsewhere, or its default",
        "src/wallet_api/core/config.py",
        "    auth_keys_refresh_seconds: float = Field(\n        2.0,\n",
        "    auth_keys_refresh_seconds: float = Field(\n        2.0,\n"
        '        validation_alias=__import__("pydantic").AliasChoices(\n'
        '            "auth_keys_refresh_seconds", "auth_key_refresh_seconds"\n'
        "        ),\n",
        (
            "tests/test_command_line.py::"
            "test_the_environment_wins_over_env_and_a_mistyped_name_changes_nothing",
        ),
    ),
    Break(
        "missing-wallet-refusal-not-kept",
        "a keyed transfer's 404 (a wallet that does not exist) is kept and replayed",
        PLAN,
        "    return refusal.reason is not Shortfall.MISSING or entry.keep_missing\n",
        "    return refusal.reason is not Shortfall.MISSING\n",
        (
            "tests/test_transfers.py::test_a_keyed_transfers_404_is_replayed_after_the_wallet_exists",
        ),
    ),
    Break(
        "already-reversed-refusal-not-kept",
        "a keyed reversal's 409 `already_reversed` is kept and replayed",
        WRITER,
        "                    isinstance(outcome, Posted) or kept(entry, outcome)\n",
        '                    isinstance(outcome, Posted)\n                    or (kept(entry, outcome) and outcome.reason.name != "ALREADY_REVERSED")\n',
        ("tests/test_reversals.py::test_a_keyed_reversals_409_is_stored_and_replayed",),
    ),
    Break(
        "replayed-problem-keeps-request-id",
        "a replayed problem document has no request_id (not the first request's)",
        "src/wallet_api/core/errors.py",
        "    return problem_document(\n"
        "        status=error.status, code=error.code, title=error.title, detail=error.detail\n"
        "    )\n",
        "    return {\n"
        "        **problem_document(\n"
        "            status=error.status, code=error.code, title=error.title, detail=error.detail\n"
        "        ),\n"
        '        "request_id": current_request_id(),\n'
        "    }\n",
        (
            "tests/test_idempotency.py::"
            "test_a_replayed_problem_has_no_request_id_and_the_header_names_the_retry",
        ),
    ),
    Break(
        "batch-holds-any-ledger-kind",
        "a batch holds deposits and withdrawals only: any other kind is a 422, nothing applied",
        "src/wallet_api/wallets/schemas.py",
        "    wallet_uuid: CanonicalUUID\n    operation: OperationType\n",
        "    wallet_uuid: CanonicalUUID\n    operation: EntryKind\n",
        ("tests/test_batch.py::test_a_batch_holds_deposits_and_withdrawals_only",),
    ),
    Break(
        "history-default-page-not-50",
        "a history page holds 50 entries when no limit is given",
        "src/wallet_api/wallets/schemas.py",
        "HISTORY_LIMIT_DEFAULT = 50\n",
        "HISTORY_LIMIT_DEFAULT = 20\n",
        ("tests/test_history.py::test_a_page_is_50_entries_by_default_and_at_most_100",),
    ),
    Break(
        "history-largest-page-below-100",
        "a history page may hold up to 100 entries",
        "src/wallet_api/wallets/schemas.py",
        "HISTORY_LIMIT_MAX = 100\n",
        "HISTORY_LIMIT_MAX = 60\n",
        ("tests/test_history.py::test_a_page_is_50_entries_by_default_and_at_most_100",),
    ),
    Break(
        "applied-transfer-uncounted",
        "`wallet_operations_total` counts applied transfers (`TRANSFER`, `applied`)",
        TRANSFERS_SERVICE,
        "        _count(outcome)\n        return transfer_id, render(outcome)[1]\n",
        "        return transfer_id, render(outcome)[1]\n",
        (
            "tests/test_operability.py::test_transfers_and_reversals_are_counted_with_their_outcomes",
        ),
    ),
    Break(
        "reversal-outcomes-uncounted",
        "`wallet_operations_total` counts reversals (`REVERSAL`) with their own outcomes",
        "src/wallet_api/reversals/service.py",
        "        _count(result)\n",
        "",
        (
            "tests/test_operability.py::test_transfers_and_reversals_are_counted_with_their_outcomes",
        ),
    ),
    Break(
        "server-records-without-request-id",
        "every log record has `request_id` (`-` outside a request), Gunicorn's and Uvicorn's too",
        "gunicorn.conf.py",
        '            "filters": ["request_id", "closed_socket"],\n',
        '            "filters": ["closed_socket"],\n',
        (
            "tests/test_operability.py::"
            "test_every_log_record_has_time_level_logger_message_request_id_and_pid",
        ),
    ),
    Break(
        "access-log-always-on",
        "`LOG_LEVEL=warning` turns the access log off",
        "src/wallet_api/core/metrics.py",
        'access_logger = logging.getLogger("wallet_api.access")\n',
        'access_logger = logging.getLogger("wallet_api.access")\naccess_logger.setLevel(logging.INFO)\n',
        ("tests/test_operability.py::test_log_level_warning_turns_the_access_log_off",),
    ),
    Break(
        "metrics-directory-kept-at-start",
        "the metrics directory is emptied at start: nothing of an earlier run counts",
        "gunicorn.conf.py",
        "        shutil.rmtree(directory, ignore_errors=True)\n        os.makedirs(directory)\n",
        "        os.makedirs(directory, exist_ok=True)\n",
        (
            "tests/test_operability.py::test_the_metrics_directory_is_emptied_at_start_and_removed_at_exit",
        ),
    ),
    Break(
        "metrics-directory-left-at-exit",
        "the metrics directory is removed at exit",
        "gunicorn.conf.py",
        '    shutil.rmtree(os.environ.get(_METRICS_DIR, ""), ignore_errors=True)\n',
        "",
        (
            "tests/test_operability.py::test_the_metrics_directory_is_emptied_at_start_and_removed_at_exit",
        ),
    ),
    Break(
        "batch-items-not-kept",
        "a retry of a batch applied half-way replays what was applied and applies the rest",
        SERVICE,
        "            first_request = await self._claim_key(idempotency_key, fingerprint)\n"
        "            items = [\n",
        "            first_request = await self._claim_key(idempotency_key, fingerprint)\n"
        "        if False:\n"
        "            items = [\n",
        (
            "tests/test_batch.py::"
            "test_a_retry_of_a_batch_applied_half_way_replays_what_was_applied_and_applies_the_rest",
        ),
    ),
    Break(
        "replayed-success-header-undescribed",
        "the document describes Idempotent-Replayed on a keyed endpoint's success",
        "src/wallet_api/core/openapi.py",
        '    return {status: {"headers": {REPLAYED: {"$ref": HEADERS + REPLAYED}}}}\n',
        '    return {status: {"headers": {}}}\n',
        (
            "tests/test_openapi.py::"
            "test_the_idempotent_replayed_header_is_described_on_every_keyed_endpoint",
        ),
    ),
    Break(
        "replayed-refusal-header-undescribed",
        "the document describes Idempotent-Replayed on the refusals a key keeps",
        "src/wallet_api/core/openapi.py",
        "        if status in replayed:\n",
        "        if False:\n",
        (
            "tests/test_openapi.py::"
            "test_the_idempotent_replayed_header_is_described_on_every_keyed_endpoint",
        ),
    ),
    Break(
        "created-wallet-not-linked-to-operate",
        "a created wallet is linked to its endpoints in the document",
        "src/wallet_api/wallets/router.py",
        '        ("Operate", "operate"),\n',
        "",
        ("tests/test_openapi.py::test_a_created_wallet_is_linked_to_its_endpoints",),
    ),
    Break(
        "wallets-to-inspect-unbounded",
        "the verifier's summary names at most 20 wallets to inspect",
        REPOSITORY,
        "               ) bad ORDER BY id LIMIT 20\n",
        "               ) bad ORDER BY id\n",
        ("tests/test_verifier.py::test_the_summary_names_at_most_20_wallets_and_20_transfers",),
    ),
    Break(
        "transfers-to-inspect-unbounded",
        "the verifier's summary names at most 20 transfers to inspect",
        REPOSITORY,
        "ARRAY(SELECT transfer_id FROM unmatched ORDER BY 1 LIMIT 20) AS transfers_to_inspect,",
        "ARRAY(SELECT transfer_id FROM unmatched ORDER BY 1) AS transfers_to_inspect,",
        ("tests/test_verifier.py::test_the_summary_names_at_most_20_wallets_and_20_transfers",),
    ),
    Break(
        "autogenerated-revision-left-unformatted",
        "an autogenerated revision comes out formatted (the post-write hook runs ruff format)",
        "src/wallet_api/devtools/format_revision.py",
        '    return subprocess.run([*ruff, "format", "--quiet", path], check=False).returncode\n',
        "    return 0\n",
        ("tests/test_migrations.py::test_autogenerate_with_a_change_writes_its_revision",),
    ),
    Break(
        "redis-url-unchecked",
        "a REDIS_URL Redis cannot use stops the start in one line, its value unprinted",
        "src/wallet_api/core/config.py",
        "        if value is not None and not value.startswith(_REDIS_SCHEMES):\n",
        "        if False:\n",
        ("tests/test_command_line.py::test_db_password_and_redis_url_are_never_printed",),
    ),
    Break(
        "purge-waits-for-held-keys",
        "the purge skips the keys another transaction holds (SKIP LOCKED): it never waits",
        REPOSITORY,
        "            FOR UPDATE SKIP LOCKED\n",
        "            FOR UPDATE\n",
        (
            "tests/test_idempotency.py::"
            "test_the_purge_takes_1000_keys_at_a_time_and_never_waits_for_a_held_one",
        ),
    ),
    Break(
        "purge-takes-everything-at-once",
        "the purge deletes 1,000 keys per statement",
        SERVICE,
        "PURGE_BATCH = 1000\n",
        "PURGE_BATCH = 5000\n",
        (
            "tests/test_idempotency.py::"
            "test_the_purge_takes_1000_keys_at_a_time_and_never_waits_for_a_held_one",
        ),
    ),
    Break(
        "partial-body-taken-whole",
        "a request not read whole when its client went away (at SIGTERM) is not applied",
        "src/wallet_api/core/requests.py",
        "            raise ClientDisconnect  # what the route's `Request.body()` raises\n",
        '            return b"".join(chunks)\n',
        (
            "tests/test_shutdown.py::"
            "test_a_request_not_read_at_sigterm_gets_a_closed_connection_and_is_not_applied",
        ),
    ),
    Break(
        "unread-request-held-past-graceful-timeout",
        "a request not read at SIGTERM gets a closed connection: the drain ends at GRACEFUL_TIMEOUT",
        "gunicorn.conf.py",
        "graceful_timeout = _settings.graceful_timeout\n",
        "graceful_timeout = 3600\n",
        (
            "tests/test_shutdown.py::"
            "test_a_request_not_read_at_sigterm_gets_a_closed_connection_and_is_not_applied",
        ),
    ),
    Break(
        "client-gone-mid-body-logged-as-an-error",
        "a client gone before its body was read is no error of ours (no traceback in the log)",
        "src/wallet_api/core/front_door.py",
        "    except ClientDisconnect:\n",
        "    except ZeroDivisionError:\n",
        (
            "tests/test_shutdown.py::test_a_request_not_read_at_sigterm_gets_a_closed_connection_and_is_not_applied",
        ),
    ),
    Break(
        "make-clean-deletes-data",
        "`make clean` removes .venv and caches and keeps .data (the wallets of `make run`)",
        "Makefile",
        "\trm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis mutants\n",
        "\trm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .schemathesis mutants .data\n",
        (
            "tests/test_make_run_data.py::"
            "test_make_clean_keeps_data_and_make_clean_data_deletes_it_and_says_so",
        ),
    ),
    Break(
        "make-clean-data-silent",
        "`make clean-data` says what it deletes",
        "Makefile",
        '\t@echo "clean-data: deleting .data/ (every wallet, ledger entry and API key of \\`make run\\`)"\n',
        "",
        (
            "tests/test_make_run_data.py::"
            "test_make_clean_keeps_data_and_make_clean_data_deletes_it_and_says_so",
        ),
    ),
    Break(
        "embedded-postgres-on-tcp",
        "the embedded PostgreSQL of `make run` listens only on a Unix socket in .data/postgres",
        "src/wallet_api/devtools/postgres.py",
        "        info = server.get_postmaster_info()\n"
        '        logger.info("embedded PostgreSQL running in %s (pid %s)", data_dir, info.pid)\n'
        "        yield PostgresAddress(\n"
        '            host=str(info.socket_dir), port=int(info.port or 5432), user="postgres"\n'
        "        )\n",
        "        from embedded_postgres._commands import pg_ctl\n"
        "\n"
        "        from wallet_api.devtools.server import free_port\n"
        "\n"
        '        options = f"-h 127.0.0.1 -p {free_port()} -k {data_dir}"  # psql over TCP too\n'
        '        pg_ctl(["-w", "-o", options, "restart"], pgdata=data_dir, user=server.system_user, timeout=60)\n'
        "        address = running_embedded_postgres(data_dir)\n"
        "        assert address is not None\n"
        "        yield address\n",
        (
            "tests/test_make_run_data.py::"
            "test_the_embedded_postgres_listens_only_on_a_unix_socket_in_data_postgres",
        ),
    ),
    Break(
        "compose-db-host-from-dotenv",
        "the compose service's DB_HOST is WALLET_DB_HOST's: a `.env` DB_HOST does not leak in",
        "docker-compose.yml",
        "      # a separate name, so that a DB_HOST meant for local runs in `.env` cannot leak in here.\n"
        "      DB_HOST: ${WALLET_DB_HOST:-postgres}\n",
        "      # a separate name, so that a DB_HOST meant for local runs in `.env` cannot leak in here.\n"
        "      DB_HOST: ${DB_HOST:-postgres}\n",
        (
            "tests/test_docker_files.py::"
            "test_the_service_db_host_is_wallet_db_hosts_so_a_dotenv_db_host_does_not_leak_in",
        ),
    ),
    Break(
        "compose-port-on-every-interface",
        "the compose file publishes the service's port on the host's loopback only",
        "docker-compose.yml",
        '      - "127.0.0.1:8000:8000"\n',
        '      - "8000:8000"\n',
        ("tests/test_docker_files.py::test_the_port_is_published_on_the_hosts_loopback_only",),
    ),
    Break(
        "compose-stop-grace-period-not-past-the-drain",
        "the compose stop_grace_period (40 s) is longer than GRACEFUL_TIMEOUT (30 s)",
        "docker-compose.yml",
        "    stop_grace_period: 40s\n",
        "    stop_grace_period: 30s\n",
        (
            "tests/test_docker_files.py::"
            "test_stop_grace_period_is_40_seconds_longer_than_graceful_timeout",
        ),
    ),
    Break(
        "dockerfile-source-before-dependencies",
        "the image's dependency layers come before the source: a code change reinstalls none",
        "Dockerfile",
        "COPY pyproject.toml requirements.lock ./\n",
        "COPY pyproject.toml requirements.lock ./\nCOPY src/ src/\n",
        ("tests/test_docker_files.py::test_a_code_change_reinstalls_no_dependency",),
    ),
    Break(
        "entrypoint-migration-not-retried",
        "the image's entrypoint retries `alembic upgrade head` while the database is starting",
        "docker/entrypoint.sh",
        "    until alembic upgrade head; do\n",
        "    until alembic upgrade head || exit 1; do\n",
        (
            "tests/test_entrypoint.py::"
            "test_a_database_still_starting_is_retried_then_migrated_and_the_command_runs",
        ),
    ),
    Break(
        "entrypoint-one-attempt-by-default",
        "the image's entrypoint tries MIGRATION_ATTEMPTS times, 15 by default",
        "docker/entrypoint.sh",
        '    attempts="${MIGRATION_ATTEMPTS:-15}"\n',
        '    attempts="${MIGRATION_ATTEMPTS:-2}"\n',
        (
            "tests/test_entrypoint.py::"
            "test_a_database_still_starting_is_retried_then_migrated_and_the_command_runs",
        ),
    ),
    Break(
        "readiness-waits-for-the-database",
        "/health/ready answers within 2 s, also when the database never answers",
        "src/wallet_api/health/router.py",
        "        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), database.autocommit() as connection:\n",
        "        async with database.autocommit() as connection:\n",
        (
            "tests/test_database_waits.py::"
            "test_ready_answers_503_within_its_2_seconds_when_the_database_never_answers",
        ),
    ),
    Break(
        "client-timeout-2-s-without-a-statement-timeout",
        "DB_CLIENT_TIMEOUT unset and DB_STATEMENT_TIMEOUT_MS 0: the client waits 12 s",
        "src/wallet_api/core/config.py",
        "        server_limit = self.db_statement_timeout_ms or DEFAULT_STATEMENT_TIMEOUT_MS\n",
        "        server_limit = self.db_statement_timeout_ms\n",
        (
            "tests/test_database_waits.py::"
            "test_without_a_statement_timeout_the_client_waits_12_seconds",
        ),
    ),
    Break(
        "pool-never-recycled",
        "DB_POOL_RECYCLE replaces each connection that often",
        DATABASE,
        "                await self._pool.expire_connections()\n",
        "                pass\n",
        ("tests/test_database_waits.py::test_db_pool_recycle_replaces_each_connection_that_often",),
    ),
    Break(
        "overflow-kept-an-hour",
        "overflow connections close after 5 minutes unused",
        DATABASE,
        "IDLE_CONNECTION_LIFETIME_SECONDS = 300.0\n",
        "IDLE_CONNECTION_LIFETIME_SECONDS = 3600.0\n",
        ("tests/test_database_waits.py::test_overflow_connections_close_after_5_minutes_unused",),
    ),
    Break(
        "verify-under-the-service-timeouts",
        "wallet-api verify runs without the service's statement, lock and client timeouts",
        "src/wallet_api/cli/__init__.py",
        "        database = Database(settings, unbounded=True)  # one statement over the whole ledger\n",
        "        database = Database(settings)\n",
        (
            "tests/test_verifier_snapshot.py::"
            "test_verify_is_one_statement_on_one_snapshot_without_the_service_timeouts",
        ),
    ),
    Break(
        "verify-on-two-snapshots",
        "wallet-api verify reads the whole ledger in one statement, on one snapshot",
        REPOSITORY,
        "    row = await connection.fetchrow(_VERIFY_LEDGER)\n",
        '    wallets = await connection.fetchval("SELECT count(*) FROM wallets")\n'
        "    row = await connection.fetchrow(_VERIFY_LEDGER)\n"
        '    row = row and {**row, "wallets": wallets}\n',
        (
            "tests/test_verifier_snapshot.py::"
            "test_verify_is_one_statement_on_one_snapshot_without_the_service_timeouts",
        ),
    ),
    Break(
        "refused-password-not-explained",
        "a refused password is one line naming the cause and the fix, exit status 2",
        "src/wallet_api/cli/database.py",
        "            e, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError\n",
        "            e, asyncpg.InvalidAuthorizationSpecificationError\n"
        "        ) and not isinstance(e, asyncpg.InvalidPasswordError\n",
        ("tests/test_refused_password.py",),
    ),
    Break(
        "owners-read-again",
        "a wallet's owner, once read, is kept: an owner changed afterwards counts only after a restart",
        OWNERS,
        "            if wallet_id not in self._owners and wallet_id not in self._unknown\n",
        "            if wallet_id not in self._unknown\n",
        (
            "tests/test_owner_change.py::"
            "test_an_owner_changed_afterwards_counts_only_after_a_restart",
        ),
    ),
    Break(
        "lease-a-tenth-of-the-burst",
        "a larger burst is off by at most a lease per worker, a lease 1/100 of the burst",
        GATE,
        "LEASE_SHARE = 100\n",
        "LEASE_SHARE = 10\n",
        (
            "tests/test_rate_limit_leases.py::"
            "test_a_larger_burst_is_off_by_at_most_a_lease_per_worker",
        ),
    ),
    Break(
        "capture-after-expiry",
        "a hold past its expiry (by the database's clock) can no longer be captured or voided",
        PLAN,
        '        if entry.hold_status != "expired" and state.expired:\n',
        "        if False:\n",
        (
            "tests/test_holds.py::test_an_expired_hold_counts_no_more_and_cannot_be_captured_without_the_sweep",
            "tests/test_holds.py::test_a_capture_that_gets_its_hold_after_the_expiry_is_refused",
        ),
    ),
    Break(
        "expired-hold-still-counted",
        "an expired hold stops setting money aside at its expiry, released or not",
        POSTING_REPOSITORY,
        '    return f"""(CASE WHEN {wallet}.holds_expire_at IS NULL OR {wallet}.holds_expire_at > now()\n',
        '    return f"""(CASE WHEN true\n',
        (
            "tests/test_holds.py::"
            "test_an_expired_hold_counts_no_more_and_cannot_be_captured_without_the_sweep",
        ),
    ),
    Break(
        "capture-beyond-hold",
        "captures never take more than the hold holds, however many at once",
        PLAN,
        "        if taken[leg.hold] > state.remaining:\n",
        "        if False:\n",
        ("tests/test_holds.py::test_fifty_partial_captures_at_once_never_take_more_than_was_held",),
    ),
    Break(
        "hold-closed-twice",
        "a closed hold is never captured or voided again: one of fifty final captures wins",
        PLAN,
        "        if state is None or state.status != ACTIVE:\n",
        "        if state is None:\n",
        ("tests/test_holds.py::test_fifty_final_captures_at_once_one_succeeds",),
    ),
    Break(
        "debits-judged-on-the-balance",
        "every debit and every new hold is judged on the available balance under the row lock",
        POSTING_REPOSITORY,
        "            AND balance - held BETWEEN available_low AND available_high\n",
        "            AND balance BETWEEN available_low AND available_high\n",
        (
            "tests/test_holds.py::test_holds_racing_withdrawals_never_overdraw_what_is_available",
            "tests/test_holds.py::test_a_debit_is_judged_on_what_a_hold_made_by_the_other_worker_left_available",
        ),
    ),
    Break(
        "hold-readable-by-another-owner",
        "another owner's hold is a 404, as a missing one is: read, captured or voided",
        "src/wallet_api/holds/service.py",
        "        if hold is None or hold.wallet_id in await self._owners.foreign(owner, (hold.wallet_id,)):\n",
        "        if hold is None:\n",
        (
            "tests/test_owners.py::test_capture",
            "tests/test_owners.py::test_void_and_read",
            "tests/test_holds.py::"
            "test_another_owners_hold_is_a_404_and_a_capture_may_pay_another_owner",
        ),
    ),
    Break(
        "hold-on-another-owners-wallet",
        "a key sets money aside only on its owner's wallets",
        "src/wallet_api/holds/service.py",
        "        if wallet_id in await self._owners.foreign(owner, (wallet_id,)):\n",
        "        if False:\n",
        ("tests/test_owners.py::test_hold",),
    ),
    Break(
        "capture-tells-payee-balance",
        "a capture into another owner's wallet does not tell its balance",
        "src/wallet_api/holds/entries.py",
        "    payee_balance = None if payee is None or hidden else outcome.balances[1]\n",
        "    payee_balance = None if payee is None else outcome.balances[1]\n",
        ("tests/test_owners.py::test_capture",),
    ),
    Break(
        "range-hold-sets-nothing-aside",
        "a hold written by the one statement sets its amount aside on its wallet",
        POSTING_REPOSITORY,
        "            held = l.stored_held + n.amount,\n",
        "            held = l.stored_held,\n",
        (
            "tests/test_range_write.py::test_a_hold_is_opened_with_its_part_and_only_then",
            "tests/test_holds.py::"
            "test_a_hold_sets_money_aside_the_balance_stays_and_debits_are_judged_on_the_rest",
        ),
    ),
    Break(
        "range-hold-expiry-unnoted",
        "a hold written by the one statement stops counting at its expiry",
        POSTING_REPOSITORY,
        "            holds_expire_at = least(l.holds_expire_at, n.first_expiry)\n",
        "            holds_expire_at = l.holds_expire_at\n",
        (
            "tests/test_holds.py::"
            "test_an_expired_hold_counts_no_more_and_cannot_be_captured_without_the_sweep",
        ),
    ),
    Break(
        "range-write-trusts-a-stale-sum-of-holds",
        "a wallet with a hold expired and not yet released is written only under its lock, "
        "its holds summed after it",
        POSTING_REPOSITORY,
        "            AND NOT due\n",
        "",
        ("tests/test_range_write.py::test_a_wallet_with_an_expired_hold_is_left_to_the_locks",),
    ),
    Break(
        "locked-held-summed-in-the-waiting-statement",
        "the locking transaction sums a wallet's holds after it holds the wallet's lock",
        POSTING_REPOSITORY,
        '    if row["due"]:  # a hold of theirs has expired: what the others set aside, read now\n',
        "    if False:\n",
        ("tests/test_range_write.py::test_the_locks_sum_the_holds_another_transaction_committed",),
    ),
    Break(
        "compose-setting-not-passed-on",
        "the compose file passes every setting of the service on to its container",
        "docker-compose.yml",
        "      HOLDS_SWEEP_SECONDS:\n",
        "",
        (
            "tests/test_docker_files.py::"
            "test_every_setting_of_the_service_is_passed_on_to_its_container",
        ),
    ),
    Break(
        "expiry-judged-at-the-transactions-start",
        "a capture committed after the expiry is refused, also one that waited for its hold",
        POSTING_REPOSITORY,
        "    SELECT id, remaining, captured, status, expires_at <= clock_timestamp() AS expired\n",
        "    SELECT id, remaining, captured, status, expires_at <= now() AS expired\n",
        ("tests/test_holds.py::test_a_capture_that_gets_its_hold_after_the_expiry_is_refused",),
    ),
    Break(
        "active-holds-read-among-all-holds",
        "a write reads a wallet's active holds through their own index: its cost does not grow"
        " with the wallet's closed holds or other wallets' active ones",
        "migrations/versions/2026_12_05_0020-e5b1c7d93a42_index_active_holds_by_wallet.py",
        '            ["wallet_id", "expires_at"],\n            postgresql_include=["remaining"],\n',
        '            ["api_key_id"],\n',
        ("tests/test_query_plans.py",),
    ),
    Break(
        "hold-fast-path-differs",
        "the hold fast path answers as the route does (its Location header included)",
        "src/wallet_api/holds/fast_path.py",
        "    return created_response(*result)\n",
        "    response = created_response(*result)\n"
        '    del response.headers["location"]\n'
        "    return response\n",
        (
            "tests/test_fast_path.py::test_a_hold_is_answered_the_same_by_the_fast_path_and_the_route",
        ),
    ),
    Break(
        "capture-fast-path-ignores-the-owner",
        "a plain capture, served by the fast path, is refused on another owner's hold too",
        "src/wallet_api/holds/fast_path.py",
        "        hold_id,\n        request,\n        owner=owner_of(scope),\n",
        "        hold_id,\n        request,\n        owner=None,\n",
        ("tests/test_owners.py::test_capture",),
    ),
    Break(
        "client-new-key-per-try",
        "every try of a client's POST carries the same Idempotency-Key: a lost answer's retry"
        " is replayed, never applied again",
        "clients/python/src/wallet_api_client/_calls.py",
        "        return request_of(self.call, self.key)\n",
        '        return request_of(self.call, new_key() if self.call.method == "POST" else None)\n',
        ("tests/test_client_retries.py::test_a_deposit_whose_answer_was_lost_is_applied_once",),
    ),
    Break(
        "client-retries-refusals",
        "the client never tries a refused request (a 4xx other than 429) again",
        "clients/python/src/wallet_api_client/retry.py",
        "    return status in RETRIED_STATUSES or (status == 500 and code in RETRIED_500_CODES)\n",
        "    return status >= 400\n",
        ("tests/test_client_retries.py::test_a_refusal_is_never_tried_again",),
    ),
    Break(
        "client-ignores-retry-after",
        "the client waits at least the Retry-After the service sent before it tries again",
        "clients/python/src/wallet_api_client/retry.py",
        "            delay = max(delay, retry_after)\n",
        "            delay = min(delay, retry_after)\n",
        ("tests/test_client_retries.py::test_a_429_is_retried_after_its_retry_after",),
    ),
    Break(
        "feed-follows-ids",
        "the feed never skips an event: a page stops below the oldest transaction running",
        "src/wallet_api/events/repository.py",
        "          AND e.xid < pg_snapshot_xmin(pg_current_snapshot())\n          AND ($4::text[]",
        "          AND ($4::text[]",
        ("tests/test_events.py::test_a_transaction_open_across_a_read_is_not_skipped",),
    ),
    Break(
        "wallet-numbering-stands-still",
        "each wallet's ledger rows are numbered 1, 2, 3, ... without gaps or repeats",
        POSTING_REPOSITORY,
        "seq = l.seq + l.rows,\n",
        "seq = l.seq,\n",
        ("tests/test_events.py::test_every_change_is_one_event_and_a_refusal_none",),
    ),
    Break(
        "event-shows-the-other-owners-leg",
        "an owner's event shows only its own wallets' rows (not the payee's balance)",
        "src/wallet_api/events/schemas.py",
        "        if ledger_id in legs and legs[ledger_id].owner == event.owner\n",
        "        if ledger_id in legs\n",
        (
            "tests/test_events.py::"
            "test_an_owner_sees_its_own_events_and_its_side_of_a_transfer_to_another",
        ),
    ),
    Break(
        "two-senders-one-delivery",
        "two senders never send one attempt twice: a claim skips rows another holds",
        "src/wallet_api/webhooks/repository.py",
        "        LIMIT $1\n        FOR UPDATE SKIP LOCKED\n    ) AND w.id = d.endpoint_id",
        "        LIMIT $1\n    ) AND w.id = d.endpoint_id",
        ("tests/test_webhooks.py::test_senders_share_the_work_and_a_killed_one_loses_nothing",),
    ),
    Break(
        "a-recovered-endpoint-waits-out-its-backoffs",
        "an endpoint that answers again gets its waiting deliveries at once",
        "src/wallet_api/webhooks/repository.py",
        "            WHERE $7::boolean AND d.endpoint_id = $9::uuid AND d.status = 'pending'",
        "            WHERE false AND d.endpoint_id = $9::uuid AND d.status = 'pending'",
        (
            "tests/test_webhooks.py::"
            "test_an_endpoint_back_from_an_outage_gets_its_waiting_deliveries_at_once",
        ),
    ),
    Break(
        "a-recovery-sends-a-leased-delivery-again",
        "a recovery never makes a delivery leased to a sender due again",
        "src/wallet_api/webhooks/repository.py",
        "              AND d.next_attempt_at > clock_timestamp() + make_interval(secs => $11::float8)",
        "              AND d.next_attempt_at > now() - make_interval(secs => $11::float8)",
        (
            "tests/test_webhooks.py::"
            "test_an_endpoint_back_from_an_outage_gets_its_waiting_deliveries_at_once",
        ),
    ),
    Break(
        "a-wallets-events-out-of-its-order",
        "a wallet's events are in its order in the feed, also when a writer waited",
        "src/wallet_api/posting/repository.py",
        "        SELECT (SELECT xid FROM stamp), t.type, g.owner,",
        "        SELECT pg_current_xact_id(), t.type, g.owner,",
        (
            "tests/test_events.py::"
            "test_a_wallets_events_are_in_its_order_when_a_writer_waited_for_another",
        ),
    ),
    Break(
        "a-locking-write-dates-entries-at-its-start",
        "a transaction that waited for a wallet dates its entries no earlier than the last",
        "src/wallet_api/posting/repository.py",
        "    SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at, array_agg(id) AS ids,",
        "    SELECT now() AS at, array_agg(id) AS ids,",
        (
            "tests/test_ledger_time.py::test_a_writer_that_waited_dates_its_entries_after_those_it_waited_behind",
        ),
    ),
    Break(
        "a-range-write-dates-entries-at-its-start",
        "a statement that waited for a wallet dates its entries no earlier than the last",
        "src/wallet_api/posting/repository.py",
        "        SELECT greatest(clock_timestamp(), max(last_entry_at)) AS at,",
        "        SELECT now() AS at,",
        (
            "tests/test_ledger_time.py::test_a_balance_at_a_point_in_time_is_the_ledger_replayed_up_to_it",
        ),
    ),
    Break(
        "a-balance-at-a-time-leaves-out-its-own-entry",
        "the balance at a time counts the entries dated at that time",
        "src/wallet_api/wallets/repository.py",
        "               WHERE o.wallet_id = $1 AND o.created_at <= $2",
        "               WHERE o.wallet_id = $1 AND o.created_at < $2",
        (
            "tests/test_ledger_time.py::test_a_balance_at_a_point_in_time_is_the_ledger_replayed_up_to_it",
        ),
    ),
    Break(
        "history-from-leaves-out-its-first-entry",
        "a history from a time includes the entries dated at it",
        "src/wallet_api/wallets/repository.py",
        "          AND o.created_at >= coalesce($4::timestamptz, '-infinity'::timestamptz)",
        "          AND o.created_at > coalesce($4::timestamptz, '-infinity'::timestamptz)",
        (
            "tests/test_ledger_time.py::test_history_filtered_by_kind_and_time_pages_without_gaps_while_writes_go_on",
        ),
    ),
    Break(
        "a-filtered-history-page-reads-the-whole-ledger",
        "a page filtered by kind examines a bounded part of the ledger",
        "src/wallet_api/wallets/service.py",
        "        examine = limit + 1 if kinds is None else max(limit + 1, HISTORY_EXAMINE)",
        "        examine = limit + 1 if kinds is None else 10**9",
        (
            "tests/test_ledger_time.py::test_a_page_of_a_rare_kind_examines_a_bounded_part_of_the_ledger",
        ),
    ),
    Break(
        "a-history-page-reads-a-stretch-and-sorts-it",
        "a history page reads its wallet's index in order, up to its limit, never a stretch",
        "src/wallet_api/core/database.py",
        '_INDEX_ORDER = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL jit = off"',
        '_INDEX_ORDER = "SELECT 1"',
        ("tests/test_query_plans.py::test_the_ledger_in_time_reads_only_what_it_answers",),
    ),
    Break(
        "a-recovery-ignores-retry-after",
        "a success never makes due a delivery whose receiver asked to wait (Retry-After)",
        "src/wallet_api/webhooks/repository.py",
        "              AND (d.not_before IS NULL OR d.not_before <= now()) AND d.id <> $1::bigint",
        "              AND d.id <> $1::bigint",
        (
            "tests/test_webhooks.py::"
            "test_an_endpoint_back_from_an_outage_gets_its_waiting_deliveries_at_once",
        ),
    ),
    Break(
        "a-statement-under-the-services-statement-timeout",
        "a statement's COPY waits on a slow reader under its own time limit, not the service's",
        "src/wallet_api/core/database.py",
        '                f"SET LOCAL statement_timeout = {round(timeout_seconds * 1000)}"',
        "                \"SET LOCAL application_name = 'wallet-api'\"",
        ("tests/test_statements.py::test_a_statement_read_slowly_outlasts_the_statement_timeout",),
    ),
    Break(
        "a-history-cursor-looked-up-on-any-wallet",
        "a history cursor naming another wallet's entry tells nothing of when it was written",
        "src/wallet_api/wallets/repository.py",
        "             WHERE c.id = $2::bigint AND c.wallet_id = $1),",
        "             WHERE c.id = $2::bigint),",
        (
            "tests/test_ledger_time.py::"
            "test_a_cursor_naming_another_wallets_entry_tells_nothing_of_it",
        ),
    ),
    Break(
        "webhooks-into-the-private-network",
        "a webhook to a private or loopback address is refused unless allowed",
        "src/wallet_api/webhooks/targets.py",
        "    if allow_private:\n        return None\n",
        "    if allow_private or True:\n        return None\n",
        ("tests/test_webhooks.py::test_private_addresses_are_refused_unless_allowed",),
    ),
    Break(
        "webhooks-follow-redirects",
        "a webhook's redirect is never followed (a failure, not a call elsewhere)",
        "src/wallet_api/webhooks/delivery.py",
        "            follow_redirects=False,\n",
        "            follow_redirects=True,\n",
        (
            "tests/test_webhooks.py::"
            "test_refusals_time_outs_and_redirects_fail_and_attempts_stop_at_the_cap",
        ),
    ),
    Break(
        "monitor-triggers-while-across",
        "a monitor's event comes when the balance goes across, not on every commit there",
        POSTING_REPOSITORY,
        "        WHERE m.id = c.id AND m.across <> c.across\n",
        "        WHERE m.id = c.id\n",
        (
            "tests/test_balance_monitors.py::test_a_crossing_is_one_event_and_staying_across_is_none",
        ),
    ),
    Break(
        "fan-out-reads-the-whole-feed",
        "the webhook fan-out reads only the events after its position (its scan is bounded)",
        "src/wallet_api/webhooks/repository.py",
        "        SELECT e.id, e.xid, e.type, e.owner, e.created_at FROM events e\n"
        "        WHERE (e.xid, e.id) > ((SELECT xid FROM position), (SELECT event_id FROM position))",
        "        SELECT e.id, e.xid, e.type, e.owner, e.created_at FROM events e, position p\n"
        "        WHERE (e.xid, e.id) > (p.xid, p.event_id)",
        (
            "tests/test_query_plans.py::"
            "test_the_feed_and_the_fan_out_read_only_what_follows_their_position",
        ),
    ),
    Break(
        "metadata-not-in-the-fingerprint",
        "metadata is part of the request an Idempotency-Key stands for",
        "src/wallet_api/core/fields.py",
        "    return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode()\n",
        '    return ""\n',
        ("tests/test_metadata.py::test_metadata_is_part_of_the_request_a_key_stands_for",),
    ),
    Break(
        "metadata-fingerprint-by-key-order",
        "the same metadata written in another key order is the same request",
        "src/wallet_api/core/fields.py",
        "    return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS).decode()\n",
        "    return orjson.dumps(metadata).decode()\n",
        ("tests/test_metadata.py::test_metadata_is_part_of_the_request_a_key_stands_for",),
    ),
    Break(
        "metadata-lost-by-the-range-write",
        "the one-statement write keeps each entry's metadata on its rows",
        ROWS,
        "            event,\n            entry.metadata,\n",
        "            event,\n            None,\n",
        ("tests/test_metadata.py::test_every_write_keeps_its_metadata_on_its_entries",),
    ),
    Break(
        "metadata-lost-by-the-locking-write",
        "the locking transaction keeps each entry's metadata on its rows",
        ROWS,
        "        write.metadata.append(entry.metadata)\n",
        "        write.metadata.append(None)\n",
        ("tests/test_metadata.py::test_every_write_keeps_its_metadata_on_its_entries",),
    ),
    Break(
        "metadata-filter-ignored",
        "the history's metadata filter returns only the entries with that key and value",
        REPOSITORY,
        "          AND m.metadata IS NOT NULL\n",
        "          AND m.metadata IS NOT NULL OR m.wallet_id = $1\n",
        ("tests/test_metadata.py::test_the_history_filters_by_a_metadata_key_and_value",),
    ),
    Break(
        "metadata-unbounded",
        "metadata beyond its bounds is refused",
        "src/wallet_api/core/fields.py",
        "    Field(max_length=METADATA_MAX_KEYS),\n",
        "    Field(max_length=METADATA_MAX_KEYS * 100),\n",
        ("tests/test_metadata.py::test_metadata_beyond_its_bounds_is_422_and_changes_nothing",),
    ),
    Break(
        "metadata-filter-without-its-index",
        "the history's metadata filter reads the rows with that key and value, found by index",
        REPOSITORY,
        "        WHERE {wallet_metadata(\"m\")} @> jsonb_set('{{}}'::jsonb, ARRAY[$1::text], $8::jsonb)\n",
        "        WHERE m.metadata @> $8::jsonb AND m.wallet_id = $1\n",
        (
            "tests/test_query_plans.py::"
            "test_the_metadata_filter_reads_the_rows_with_that_key_and_value",
        ),
    ),
    Break(
        "statements-unbounded-per-worker",
        "a worker sends at most 4 statements at once; a fifth is a 429",
        "src/wallet_api/statements/service.py",
        "STATEMENTS_AT_ONCE = 4\n",
        "STATEMENTS_AT_ONCE = 5\n",
        ("tests/test_statements.py::test_a_worker_sends_a_bounded_number_of_statements_at_once",),
    ),
    Break(
        "event-without-its-entries-metadata",
        "an event's entries show their metadata, as the history does",
        "src/wallet_api/events/schemas.py",
        '        "metadata": stored_json(leg.metadata),\n',
        "",
        ("tests/test_metadata.py::test_an_event_shows_its_entries_metadata",),
    ),
    Break(
        "problem-echoes-a-long-key",
        "a refused metadata key is not echoed whole in the problem document",
        "src/wallet_api/core/errors.py",
        "LOCATION_PART_LENGTH = 40\n",
        "LOCATION_PART_LENGTH = 40_000\n",
        ("tests/test_metadata.py::test_a_refused_key_is_not_echoed_whole",),
    ),
    Break(
        "a-void-releases-without-the-holds-metadata",
        "a void's release carries the hold's metadata",
        "src/wallet_api/holds/entries.py",
        "        metadata=hold.metadata,\n        idempotency_key=idempotency_key,\n",
        "        idempotency_key=idempotency_key,\n",
        ("tests/test_metadata.py::test_a_holds_metadata_goes_with_its_release_by_void_or_expiry",),
    ),
    Break(
        "an-expiry-releases-without-the-holds-metadata",
        "an expired hold's release carries the hold's metadata",
        "src/wallet_api/holds/entries.py",
        '        legs=(leg,), hold_status="expired", event=EventType.HOLD_EXPIRED, metadata=due.metadata\n',
        '        legs=(leg,), hold_status="expired", event=EventType.HOLD_EXPIRED\n',
        ("tests/test_metadata.py::test_a_holds_metadata_goes_with_its_release_by_void_or_expiry",),
    ),
    Break(
        "a-hold-opened-without-its-metadata",
        "a hold keeps the metadata it was made with (the range write that opens it)",
        ROWS,
        "                entry.api_key_id,\n                entry.metadata,\n            )\n        )\n",
        "                entry.api_key_id,\n                None,\n            )\n        )\n",
        ("tests/test_metadata.py::test_a_holds_metadata_goes_with_its_release_by_void_or_expiry",),
    ),
    Break(
        "a-transfer-between-two-currencies",
        "money moves between wallets of one currency only: a transfer across is refused",
        "src/wallet_api/transfers/service.py",
        "        if payee is not None and payee.code != currency.code:\n",
        "        if False:\n",
        ("tests/test_currencies.py::test_money_moves_between_wallets_of_one_currency_only",),
    ),
    Break(
        "a-capture-into-another-currency",
        "money moves between wallets of one currency only: a capture across is refused",
        "src/wallet_api/holds/service.py",
        "            if payee_currency is not None and payee_currency.code != currency.code:\n",
        "            if False:\n",
        ("tests/test_currencies.py::test_money_moves_between_wallets_of_one_currency_only",),
    ),
    Break(
        "an-amount-of-more-digits-than-its-currency",
        "an amount has at most its currency's fractional digits",
        "src/wallet_api/core/money.py",
        "        if digits < -exponent:\n",
        "        if digits < -MAX_FRACTION_DIGITS:\n",
        (
            "tests/test_currencies.py::"
            "test_an_amount_beyond_its_currencys_digits_is_refused_and_changes_nothing",
        ),
    ),
    Break(
        "another-owners-wallet-judged-in-its-currency",
        "no refusal tells another owner's wallet's currency",
        SERVICE,
        "            owner, (wallet_id,)\n        ):\n            return self.currencies.default, False\n",
        "            owner, (wallet_id,)\n        ):\n"
        "            return await self.currencies.one(wallet_id) or self.currencies.default, False\n",
        (
            "tests/test_currencies.py::"
            "test_another_owners_wallet_is_refused_alike_whatever_its_currency",
        ),
    ),
    Break(
        "the-specifications-body-says-the-default-currency",
        "a wallet of DEFAULT_CURRENCY answers the specification's bodies exactly",
        "src/wallet_api/wallets/schemas.py",
        '    if currency.implicit:\n        return orjson.dumps(\n            {"status"',
        '    if False:\n        return orjson.dumps(\n            {"status"',
        (
            "tests/test_currencies.py::test_a_wallet_made_without_a_currency_is_the_specifications",
            "tests/test_wallet_contract.py::test_deposit_returns_success_and_the_new_balance",
        ),
    ),
    Break(
        "a-keyed-answer-without-its-currency",
        "a keyed operation's answer, rendered by the statement, says a non-default currency",
        "src/wallet_api/wallets/schemas.py",
        '    return \'{"status":"success","balance":\', f\',"currency":"{currency.code}"}}\'\n',
        '    return \'{"status":"success","balance":\', "}"\n',
        (
            "tests/test_currencies.py::"
            "test_a_keyed_operation_answers_and_replays_its_currencys_body",
        ),
    ),
    Break(
        "money-created-summed-across-currencies",
        "verify reports the money made or lost in each currency",
        REPOSITORY,
        "        LEFT JOIN external e ON e.currency = b.currency\n",
        "        LEFT JOIN external e ON true\n",
        ("tests/test_currencies.py::test_the_ledger_check_reports_money_by_currency",),
    ),
    Break(
        "a-statement-in-cents-whatever-the-currency",
        "a statement's amounts have its currency's decimals",
        "src/wallet_api/statements/repository.py",
        '    return f"(({minor})::numeric / {10**exponent})::numeric(20, {exponent})"\n',
        '    return f"(({minor})::numeric / 100)::numeric(20, 2)"\n',
        ("tests/test_currencies.py::test_a_currency_of_each_number_of_digits_end_to_end",),
    ),
    Break(
        "an-event-in-cents-whatever-the-currency",
        "an event's amounts are in its wallet's currency",
        "src/wallet_api/events/schemas.py",
        "    exponent = event.currency_exponent\n",
        "    exponent = 2\n",
        ("tests/test_events.py::test_an_events_amounts_are_in_its_wallets_currency",),
    ),
    Break(
        "a-wallet-made-in-the-default-currency-whatever-asked",
        "create_wallet makes a wallet of the currency it is asked for",
        SERVICE,
        "        of_wallet = self.currencies.currency(currency or self.currencies.default.code)\n",
        "        of_wallet = self.currencies.default\n",
        ("tests/test_currencies.py::test_a_currency_of_each_number_of_digits_end_to_end",),
    ),
    Break(
        "balances-without-the-wallets-metadata",
        "/balances shows the metadata a wallet was made with",
        "src/wallet_api/wallets/schemas.py",
        '    if metadata is not None:\n        body["metadata"] = stored_json(metadata)\n'
        "    return orjson.dumps(body).decode()\n\n\ndef balance_body(",
        "    return orjson.dumps(body).decode()\n\n\ndef balance_body(",
        ("tests/test_metadata.py::test_a_wallet_keeps_the_metadata_it_was_made_with",),
    ),
    Break(
        "create-wallet-fingerprint-without-metadata",
        "a create_wallet key sent with other metadata is refused, not replayed",
        "src/wallet_api/wallets/schemas.py",
        '        return (self.currency or "") + canonical_metadata(self.metadata)\n',
        '        return self.currency or ""\n',
        ("tests/test_metadata.py::test_a_wallet_keeps_the_metadata_it_was_made_with",),
    ),
    Break(
        "currencies-read-one-wallet-a-query",
        "a worker reads the currencies of the wallets it meets at once together",
        "src/wallet_api/wallets/currencies.py",
        "READ_BATCH = 1_000\n",
        "READ_BATCH = 1\n",
        (
            "tests/test_currencies.py::"
            "test_a_worker_reads_the_currencies_of_many_new_wallets_in_few_queries",
        ),
    ),
    Break(
        "currencies-read-once-per-asker",
        "a wallet asked by many at once is read once",
        "src/wallet_api/wallets/currencies.py",
        "        asked = self._asked.get(wallet_id)\n",
        "        asked = None\n",
        (
            "tests/test_currencies.py::"
            "test_a_worker_reads_the_currencies_of_many_new_wallets_in_few_queries",
        ),
    ),
    Break(
        "money-crossing-currencies-unreported",
        "verify reports money moved across currencies, even when each currency adds up",
        REPOSITORY,
        "        WHERE w.currency <> c.currency OR w.currency_exponent <> c.currency_exponent\n",
        "        WHERE false\n",
        (
            "tests/test_verifier.py::"
            "test_the_verifier_catches_each_rule_broken_alone[transfers-across-currencies]",
        ),
    ),
    Break(
        "currencies-read-from-the-cache-after-the-wait",
        "each asker gets the currency read for it, not what the bounded cache holds after",
        "src/wallet_api/wallets/currencies.py",
        "            found.update(\n"
        "                (wallet_id, currency)\n"
        "                for wallet_id, currency in zip(unseen, read, strict=True)\n"
        "                if currency is not None\n"
        "            )\n",
        "            found.update((w, self._known[w]) for w in unseen if w in self._known)\n",
        (
            "tests/test_currencies.py::"
            "test_a_worker_reads_the_currencies_of_many_new_wallets_in_few_queries",
        ),
    ),
    Break(
        "front-door-records-a-failed-answer-as-500",
        "a request that fails after its answer started is counted under the status it was sent with",
        "src/wallet_api/core/front_door.py",
        "            await self._serve(scope, receive, send, headers, declared=declared, status=status)\n",
        "            await self._serve(scope, receive, send, headers, declared=declared, status=status)\n"
        "        except BaseException:\n"
        "            status.code = 500\n"
        "            raise\n",
        (
            "tests/test_statements.py::"
            "test_a_statement_cut_off_mid_stream_is_counted_with_the_status_it_was_sent_with",
        ),
    ),
    Break(
        "front-door-passes-the-fast-paths-ungated",
        "with keys required, the fast paths are guarded by the gate too",
        "src/wallet_api/core/front_door.py",
        "        matched = self.routes.match(scope)\n        if matched is not None:\n",
        "        matched = self.routes.match(scope)\n"
        "        if matched is not None:\n"
        "            self.admit = None\n",
        ("tests/test_auth.py", "tests/test_owners.py"),
    ),
    Break(
        "event-ledger-ids-out-of-place",
        "an event names its own entry's ledger rows (ids found by their place in the statement)",
        POSTING_REPOSITORY,
        "                       (SELECT array_agg(id ORDER BY id) FROM {entered})[\n",
        "                       (SELECT array_agg(id ORDER BY id DESC) FROM {entered})[\n",
        ("tests/test_events.py",),
    ),
    Break(
        "rows-counted-as-one-a-wallet",
        "a wallet's rows are numbered without gaps or repeats however many a statement "
        "writes (the range write's and the locking write's count)",
        POSTING_REPOSITORY,
        "    return [counts[wallet_id] for wallet_id in wallets]\n",
        "    return [1 for wallet_id in wallets]\n",
        ("tests/test_events.py",),
    ),
    Break(
        "event-ids-joined-in-a-loop",
        "a batch is written by a plan without loops over its own rows (an event's ids by place)",
        POSTING_REPOSITORY,
        "                SELECT l.event, l.owner, l.n, l.wallet_id,\n"
        "                       (SELECT array_agg(id ORDER BY id) FROM {entered})[\n"
        "                           row_number() OVER (ORDER BY l.n)\n"
        "                       ] AS id\n"
        "                FROM ledger l\n",
        "                SELECT l.event, l.owner, l.n, l.wallet_id, i.id\n"
        "                FROM ledger l JOIN {entered} i USING (wallet_id, seq)\n",
        (
            "tests/test_query_plans.py::"
            "test_a_batch_is_written_by_a_plan_without_loops_over_its_own_rows",
        ),
    ),
    Break(
        "gate-judges-the-path-with-its-root",
        "under a root path, the key gate judges the path as routed: /prefix/api/... is gated",
        "src/wallet_api/core/front_door.py",
        "        if self.admit is not None and path.startswith(self.guarded_prefix):\n",
        '        if self.admit is not None and scope["path"].startswith(self.guarded_prefix):\n',
        ("tests/unit/test_front_door.py",),
    ),
    Break(
        "answers-in-two-writes",
        "the service runs in the worker that sends each answer in one write",
        "gunicorn.conf.py",
        'worker_class = "wallet_api.core.worker.Worker"',
        'worker_class = "uvicorn_worker.UvicornWorker"',
        ("tests/test_worker.py",),
    ),
    Break(
        "a-close-drops-the-held-answer",
        "closing a connection sends what its answer wrote first (Connection: close)",
        "src/wallet_api/core/worker.py",
        "        self.flush()\n        self._transport.close()\n",
        "        self._transport.close()\n",
        ("tests/test_worker.py", "tests/unit/test_worker.py"),
    ),
    Break(
        "metrics-filed-under-one-process",
        "each worker's metrics are its own (Prometheus's files by a process id read from memory)",
        "src/wallet_api/core/metrics.py",
        "    return _pid\n",
        "    return 1\n",
        ("tests/test_operability.py", "tests/unit/test_metrics.py"),
    ),
    Break(
        "process-id-kept-across-fork",
        "a forked process files its metrics under its own id",
        "src/wallet_api/core/metrics.py",
        "os.register_at_fork(after_in_child=_forked)\n",
        "",
        ("tests/unit/test_metrics.py",),
    ),
    Break(
        "answer-dropped-at-the-clients-end-of-input",
        "an answer made while the client closed its sending side still goes out",
        "src/wallet_api/core/worker.py",
        "            self.coalescing.flush()\n        super().eof_received()\n",
        "            pass\n        super().eof_received()\n",
        ("tests/unit/test_worker.py",),
    ),
    Break(
        "url-pattern-with-class-escapes",
        "an endpoint's URL is refused by the service exactly where its published pattern refuses it",
        "src/wallet_api/webhooks/targets.py",
        r'    r"(?:[/?][^#\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*)?$"',
        r'    r"(?:[/?][^#\s\u0000]*)?$"',
        ("tests/unit/test_webhooks.py",),
    ),
]
