from wallet_api_client import Client

with Client("http://127.0.0.1:8000") as wallets:  # api_key="wk_…" when keys are required
    wallet = wallets.create_wallet().wallet_uuid
    print(wallets.deposit(wallet, "10.50").balance)  # retried safely: one Idempotency-Key
