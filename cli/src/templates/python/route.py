"""A weir router: messages with a `priority` header of `high` go to the `urgent` topic (or `to`)."""

import weir


@weir.route
class Urgent:
    def __init__(self, config):
        # A topic named by digits (`to=2024`) stays text.
        self.to = config.str("to", "urgent")

    def route(self, msg):
        # A topic name sends the message there unchanged; None passes it on.
        return self.to if msg.header("priority") == "high" else None
