"""The in-cluster control loop."""
