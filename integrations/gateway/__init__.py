"""The payment gateway edge: ISO 20022 over HTTP (pain.001 out, pain.002/camt.053 in, signed
JSON webhooks for incoming credits), its client with retries and a circuit breaker, and a
simulator of the gateway. Plain values in and out (messages.py); no ledger knowledge."""
