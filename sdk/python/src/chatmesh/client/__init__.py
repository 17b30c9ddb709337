"""A typed async client for chatmesh: tokens, refresh, retries, deadlines, live events.

Example::

    async with Client("127.0.0.1:8080") as client:
        await client.login("ann", "correct horse", "laptop")
        chat = await client.assistant_conversation()
        await client.send_message(chat.conversation_id, "Hello!")
        async for text in client.reply(chat.conversation_id):
            print(text, end="")
"""

from chatmesh.client.client import Account, Client
from chatmesh.client.retry import RetryPolicy
from chatmesh.client.streams import AssistantReply, EventStream
from chatmesh.client.tokens import Tokens

__all__ = ["Account", "AssistantReply", "Client", "EventStream", "RetryPolicy", "Tokens"]
