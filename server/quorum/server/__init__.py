"""Quorum server: classify, plan and execute LLM requests behind a gRPC RouteService."""
