"""Values shaped for their consumer: a key's named fields, and projection templates (an
env file, a JSON config, a URL with the key inside, a registry credential) rendered by
a small engine written here, with no code execution, attribute access, loops, files,
environment or network."""
