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
    """``(field path, what is wrong)`` for each tool turn that does not fit, as the vendors
    refuse it: a call of a tool the request does not define, a call id used twice, a call
    that the tool messages right after its assistant message (before any other message)
    do not answer, a result that answers no open call of the assistant message it follows
    (or answers one again).
    """
    defined = {tool.name for tool in params.tools}
    made: dict[str, str] = {}  # call id → the field path of the call that made it
    open_calls: dict[str, str] = {}  # the calls of the last assistant turn not yet answered
    answered: set[str] = set()
    problems: list[tuple[str, str]] = []

    def close_turn() -> None:
        for call_id, field in open_calls.items():
            problems.append(
                (
                    field,
                    f"tool call {echo(call_id)} is not answered: a tool message with its id"
                    " must follow this message, before any message of another role",
                )
            )
        open_calls.clear()

    for i, message in enumerate(messages):
        if message is None:
            continue
        role = message.role
        if role is Role.TOOL:
            call_id = message.tool_call_id
            if not call_id:
                continue
            if call_id in open_calls:
                del open_calls[call_id]
                answered.add(call_id)
            elif call_id not in made:
                problems.append(
                    (f"messages[{i}].tool_call_id", "answers no tool call made before it")
                )
            elif call_id in answered:
                problems.append(
                    (f"messages[{i}].tool_call_id", f"answers tool call {echo(call_id)} again")
                )
            else:
                problems.append(
                    (
                        f"messages[{i}].tool_call_id",
                        f"answers tool call {echo(call_id)} of {made[call_id]}: a tool result"
                        " must follow its call's message, before any message of another role",
                    )
                )
            continue
        close_turn()  # a tool turn's results follow its calls, before any other message
        for j, call in enumerate(message.tool_calls):
            field = f"messages[{i}].tool_calls[{j}]"
            call_id = call.id
            if call_id:
                if call_id in made:
                    problems.append(
                        (
                            f"{field}.id",
                            f"duplicate tool call id {echo(call_id)}: {made[call_id]} has it",
                        )
                    )
                else:
                    made[call_id] = field
                    open_calls[call_id] = f"{field}.id"
            if defined and call.name and call.name not in defined:
                problems.append(
                    (
                        f"{field}.name",
                        f"calls {echo(call.name)}, which the request's tools do not define",
                    )
                )
    close_turn()
    return problems
