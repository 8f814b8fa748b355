"""A ``before_send`` hook that captures (an audit event, a metric) must not recurse: the
event it captures is sent without running the hooks again (as the logs and traces
lanes' hooks, issue #14)."""

from __future__ import annotations


def test_an_event_a_hook_captures_is_not_hooked_again(server, make_client):
    holder = {}
    seen = []

    def hook(event):
        seen.append(event["event"])
        holder["client"].capture("audit", "ops", {"of": event["event"]})
        return event

    client = make_client(before_send=hook)
    holder["client"] = client
    client.capture("signup", "u1")
    assert client.flush(5)
    assert sorted(server.event_names()) == ["audit", "signup"]
    assert seen == ["signup"]
    assert client.stats.dropped["before_send_error"] == 0
    client.capture("second", "u1")  # the flag is cleared: the next event is hooked
    assert client.flush(5) and seen == ["signup", "second"]
