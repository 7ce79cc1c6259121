"""Whether a conversation's tool turns fit together, as every vendor requires.

Both doors (the gRPC service and the OpenAI-compatible front door) check a request with
this before anything is routed, so a caller hears which field is wrong instead of a
vendor's 400 relayed as an upstream rejection.
"""

from __future__ import annotations

from collections.abc import Sequence

from quorum.server.domain import GenerationParams, Message, Role
from quorum.server.errors import echo


def tool_turn_problems(
    messages: Sequence[Message | None], params: GenerationParams
) -> list[tuple[str, str]]:
    """``(field path, what is wrong)`` for each tool turn that does not fit: a result
    that answers no call made before it, a call of a tool the request does not define."""
    defined = {tool.name for tool in params.tools}
    made: set[str] = set()
    problems: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if message is None:
            continue
        for j, call in enumerate(message.tool_calls):
            made.add(call.id)
            if defined and call.name and call.name not in defined:
                problems.append(
                    (
                        f"messages[{i}].tool_calls[{j}].name",
                        f"calls {echo(call.name)}, which the request's tools do not define",
                    )
                )
        if message.role is Role.TOOL and message.tool_call_id and message.tool_call_id not in made:
            problems.append((f"messages[{i}].tool_call_id", "answers no tool call made before it"))
    return problems
