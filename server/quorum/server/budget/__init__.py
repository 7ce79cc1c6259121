"""Budgets: reservations that hold under concurrency, the guard, the Redis store."""
