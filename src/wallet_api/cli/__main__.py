"""`python -m wallet_api.cli`: the `wallet-api` command."""

from wallet_api.cli import main

main()
