"""A weir plugin in the general form: upper-cases text, sends empty messages to `rejects`."""

import weir


@weir.plugin
class Shout:
    def __init__(self, config):
        # A topic named by digits (`rejects=404`) stays text.
        self.rejects = config.str("rejects", "rejects")

    def process(self, msg):
        text = msg.text().upper()
        if not text:
            return weir.forward(self.rejects)  # unchanged, to another topic
        # An Output keeps the input's key and headers unless it sets its own.
        return weir.Output(text)
