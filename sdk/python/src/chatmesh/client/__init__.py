"""A typed async client for chatmesh: tokens, refresh, retries, deadlines, live events.

Example::

    async with Client("127.0.0.1:8080") as client:
        await client.login("ann", "correct horse", "laptop")
        chat = await client.assistant_conversation()
        await client.send_message(chat.conversation_id, "Hello!")
        async for text in client.reply(chat.conversation_id):
            print(text, end="")

        await client.ingest("notes", ["The gateway is Envoy."], create=True)
        hits = await client.search("notes", "Which proxy is the gateway?")
        answer = client.ask("Which proxy is the gateway?", collections=["notes"])
        async for text in answer:
            print(text, end="")
        print([(c.number, c.source) for c in answer.citations])
        await client.submit_form(form_id, {"email": "ann@example.com"})
"""

from chatmesh.client.ask import Answer
from chatmesh.client.citations import Citation, citations_of
from chatmesh.client.client import Account, Client
from chatmesh.client.documents import Document, IngestProgress, IngestResult, JobFailed, Point, SearchHit
from chatmesh.client.forms import field_errors
from chatmesh.client.retry import RetryPolicy
from chatmesh.client.streams import AssistantReply, EventStream
from chatmesh.client.tokens import Tokens

__all__ = [
    "Account",
    "Answer",
    "AssistantReply",
    "Citation",
    "Client",
    "Document",
    "EventStream",
    "IngestProgress",
    "IngestResult",
    "JobFailed",
    "Point",
    "RetryPolicy",
    "SearchHit",
    "Tokens",
    "citations_of",
    "field_errors",
]
