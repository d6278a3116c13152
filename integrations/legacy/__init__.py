"""The legacy core banking system's edge: ISO 8583 over TCP (protocol), a simulator of the core
(simulator), and the connector the app calls (client), speaking plain values (messages)."""
