"""The framework adapters (codeexec/integrations/) driven through each framework's own
interface, against a real session on the real engine; no model is called (issue 15)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock
from smolagents import CodeAgent, Tool
from smolagents.models import ChatMessage, MessageRole, Model
from smolagents.serialization import SerializationError
from smolagents.utils import AgentError

from codeexec import ContainerSession
from codeexec.integrations.autogen import CodeexecCodeExecutor
from codeexec.integrations.langchain import CodeexecTool
from codeexec.integrations.smolagents import CodeexecExecutor
from tests.conftest import unique_name

pytestmark = pytest.mark.docker


@pytest.fixture
def session(session_name: str) -> Iterator[ContainerSession]:
    with ContainerSession.start(session_name) as s:
        yield s


# -- AutoGen --------------------------------------------------------------------------


def test_autogen_executor_keeps_state_runs_shell_blocks_and_cancels() -> None:
    name = unique_name()

    async def main() -> None:
        token = CancellationToken()
        async with CodeexecCodeExecutor(name, timeout=60) as executor:
            first = await executor.execute_code_blocks([CodeBlock("x = 20", "python")], token)
            assert (first.exit_code, first.output) == (0, "")
            blocks = [CodeBlock("print(x + 1)", "python"), CodeBlock("echo from-sh", "sh")]
            second = await executor.execute_code_blocks(blocks, token)
            assert (second.exit_code, second.output) == (0, "21\nfrom-sh\n")

            failing = [CodeBlock("1/0", "python"), CodeBlock("never = 1", "python")]
            third = await executor.execute_code_blocks(failing, token)
            assert third.exit_code == 1 and "ZeroDivisionError" in third.output
            rust = await executor.execute_code_blocks([CodeBlock("fn main() {}", "rust")], token)
            assert rust.exit_code == 1 and "unsupported language 'rust'" in rust.output
            check = [CodeBlock("'never' in globals()", "python")]
            assert (await executor.execute_code_blocks(check, token)).output == "False\n"

            # Cancelling the token interrupts the code in the container.
            asyncio.get_running_loop().call_later(0.5, token.cancel)
            began = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                sleeper = [CodeBlock("import time; time.sleep(60); done = True", "python")]
                await executor.execute_code_blocks(sleeper, token)
            assert time.monotonic() - began < 30
            check = [CodeBlock("'done' in globals(), x", "python")]
            after = await executor.execute_code_blocks(check, CancellationToken())
            assert after.output == "(False, 20)\n"

            await executor.restart()  # AutoGen's reset: a fresh namespace
            gone = await executor.execute_code_blocks([CodeBlock("x", "py")], CancellationToken())
            assert gone.exit_code == 1 and "NameError" in gone.output
        assert name not in {s.name for s in ContainerSession.list_sessions()}

    asyncio.run(main())


# -- smolagents -----------------------------------------------------------------------


class ScriptedModel(Model):  # type: ignore[misc]  # smolagents is untyped
    """A model that answers with the given replies in turn (no LLM is called)."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(model_id="scripted")
        self.replies = list(replies)

    def generate(self, messages: Any, **kwargs: Any) -> ChatMessage:
        return ChatMessage(role=MessageRole.ASSISTANT, content=self.replies.pop(0))


class Shout(Tool):  # type: ignore[misc]
    name = "shout"
    description = "Upper-cases a text."
    inputs = {"text": {"type": "string", "description": "the text"}}
    output_type = "string"

    def forward(self, text: str) -> str:
        return text.upper()


def test_smolagents_code_agent_runs_its_steps_and_tools_in_the_session(
    session: ContainerSession,
) -> None:
    executor = CodeexecExecutor(session=session)
    replies = [
        "Thought: keep a number.\n<code>\nimport os\nx = 21\nprint('pid', os.getpid())\n</code>",
        "Thought: a broken step.\n<code>\nundefined_name\n</code>",
        "Thought: answer.\n<code>\nfinal_answer(shout('n=') + str(x * 2))\n</code>",
    ]
    agent = CodeAgent(tools=[Shout()], model=ScriptedModel(replies), executor=executor,
                      max_steps=5, verbosity_level=0)  # fmt: skip
    assert agent.run("double 21") == "N=42"
    steps = [s for s in agent.memory.steps if getattr(s, "code_action", None)]
    assert "pid" in steps[0].observations  # printed in the container, by step one
    assert "NameError" in str(steps[1].error)  # the model sees the traceback
    # The namespace is the session's: the host sees what the agent left there.
    assert session.execute("x").value == "21"
    assert session.execute("shout('a')").value == "'A'"  # the tool was defined there

    with pytest.raises(AgentError, match="ZeroDivisionError"):
        executor("1/0")
    # Code in the container cannot make the host unpickle: a forged answer is refused.
    forged = (
        "class FinalAnswerException(BaseException): pass\nraise FinalAnswerException('pickle:gA==')"
    )
    with pytest.raises(SerializationError, match="Pickle data rejected"):
        executor(forged)
    assert executor("x + 1").output == "22"
    executor.cleanup()  # a given session is left running
    assert session.is_running()


def test_smolagents_executor_owns_the_session_it_starts() -> None:
    name = unique_name()
    executor = CodeexecExecutor(name=name)
    try:
        executor.send_variables({"data": [1, 2, 3]})
        assert executor("sum(data)").output == "6"
    finally:
        executor.cleanup()
    assert name not in {s.name for s in ContainerSession.list_sessions()}


# -- LangChain ------------------------------------------------------------------------


def test_langchain_tool_runs_python_in_the_session(session: ContainerSession) -> None:
    tool = CodeexecTool(session=session)
    assert tool.invoke({"code": "y = 6 * 7\nprint('set')"}) == "set\n"
    assert tool.invoke({"code": "y"}) == "42\n"
    assert "ZeroDivisionError" in tool.invoke({"code": "1/0"})
    assert asyncio.run(tool.ainvoke({"code": "y + 1"})) == "43\n"
    assert tool.args == {"code": tool.args["code"]} and tool.name == "python"
    # A tool call as a chat model would send it: the answer is a ToolMessage.
    call = {"name": "python", "args": {"code": "y * 2"}, "id": "call-1", "type": "tool_call"}
    message = tool.invoke(call)
    assert message.content == "84\n" and message.tool_call_id == "call-1"
