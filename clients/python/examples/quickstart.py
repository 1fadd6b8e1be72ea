from wallet_api_client import Client

with Client() as wallets:  # WALLET_API_URL (http://127.0.0.1:8000), WALLET_API_KEY if any
    wallet = wallets.create_wallet().wallet_uuid
    print(wallets.deposit(wallet, "10.50").balance)  # retried safely: one Idempotency-Key
