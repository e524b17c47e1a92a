"""The ApiKey controller: admission, enforcement, versions, projection, report."""
