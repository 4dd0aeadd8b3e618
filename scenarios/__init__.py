"""The scenarios shipped with rlscale (YAML files beside this module)."""
