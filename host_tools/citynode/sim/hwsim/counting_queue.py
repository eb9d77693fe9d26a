# A node's flash queue as the simulators see it: the same queue, with the time of every sample whose push()
# returned (acknowledged as stored) handed to a callback. MicroPython-compatible.


class CountingQueue:
    def __init__(self, q, on_push):
        self.q = q
        self.on_push = on_push

    def push(self, rec):
        seq = self.q.push(rec)
        self.on_push(rec[0] | (rec[1] << 8) | (rec[2] << 16) | (rec[3] << 24))  # the record's time (u32 LE)
        return seq

    def peek(self):
        return self.q.peek()

    def peek_next(self):
        return self.q.peek_next()

    def ack(self, seq):
        return self.q.ack(seq)

    @property
    def depth(self):
        return self.q.depth

    @property
    def dropped(self):
        return self.q.dropped
