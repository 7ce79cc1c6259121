"""Token estimates used before a provider reports real usage."""


def count_tokens(text: str) -> int:
    """About four characters a token, at least one: cheap and close enough to plan with."""
    return max(1, (len(text) + 3) // 4)
