"""The only code that talks to the apiserver, and what the operator knows between calls."""
