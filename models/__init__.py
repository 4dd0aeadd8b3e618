"""The trained policies that ship with rlscale, one exported policy directory each."""
