"""In-repo fakes of cloud KMS services for the peers no emulator serves here: each
speaks the service's real wire protocol (gRPC for Google Cloud KMS, HTTPS REST for
Azure Key Vault) over TLS, so the unmodified SDK clients drive them, and each refuses
what the service refuses (wrong AAD, disabled or destroyed versions, bad CRC32C,
callers without permission). ``issuer`` is the other side of keykeeper's own webhook
contract for issued keys, with the failures issuers have."""
