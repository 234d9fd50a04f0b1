import base64
import json

import httpx
import pytest

from services.shared.bus import BusError, RelayPublisher, open_publisher


def publisher_answering(handler) -> RelayPublisher:
    publisher = RelayPublisher("http://relay")
    publisher._client = httpx.Client(
        base_url="http://relay", transport=httpx.MockTransport(handler)
    )
    return publisher


def test_a_message_is_published_as_the_pubsub_rest_call():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messageIds": ["42"]})

    message_id = publisher_answering(handler).publish(
        "task-events", b'{"a": 1}', {"type": "x"}
    )

    assert message_id == "42"
    [request] = seen
    assert request.url.path == "/v1/projects/local/topics/task-events:publish"
    [message] = json.loads(request.content)["messages"]
    assert base64.b64decode(message["data"]) == b'{"a": 1}'
    assert message["attributes"] == {"type": "x"}


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(503),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"messageIds": []}),
        httpx.Response(200, json=["42"]),
    ],
)
def test_a_refusal_or_a_malformed_answer_is_a_bus_error(response):
    publisher = publisher_answering(lambda request: response)
    with pytest.raises(BusError):
        publisher.publish("task-events", b"{}", {})


def test_an_unreachable_relay_is_a_bus_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(BusError, match="unreachable"):
        publisher_answering(handler).publish("task-events", b"{}", {})


def test_the_bus_url_picks_the_publisher():
    assert isinstance(open_publisher("relay://127.0.0.1:8085"), RelayPublisher)
    with pytest.raises(ValueError, match="unsupported bus URL"):
        open_publisher("amqp://x")
