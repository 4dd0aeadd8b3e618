"""The real Swarm rig: a CPU-bound inference server (`server.py`, run in containers), its image, a
Prometheus that discovers every replica, an open-loop load generator, and `rlscale rig`."""
