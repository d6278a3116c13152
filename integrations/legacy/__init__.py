"""The legacy core banking system's edge: ISO 8583 over TCP (protocol), a simulator of the core
(simulator), the connector the app calls (client), speaking plain values (messages), and the
fixed-width export the core hands over when customers migrate (export)."""
