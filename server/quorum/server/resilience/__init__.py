"""Resilience: circuit breakers (shared across replicas through Redis), client-side
limits and the retry budget, deployment balancing and observed latencies."""
