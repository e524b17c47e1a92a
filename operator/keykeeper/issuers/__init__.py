"""Issuers: the services that issue a key upstream (a team's webhook, AWS IAM), behind
one small interface (``base.Issuer``): mint a version, verify it, revoke one, and list
the live ones where the service can. The platform team names the issuer on the
KeyPolicy; nothing a tenant writes chooses whom the operator calls."""
