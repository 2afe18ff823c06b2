"""What the worker sends the supervisor besides the result: displays (display(),
update_display(), clear_output(), a cell's rich value, matplotlib figures), each
capped and, from the cell's own thread, kept in its place in the printed output
(the ack pipe releases a display once the supervisor has forwarded what was printed
before it). A mixin of ``Worker`` (worker.py), which owns the pipes and the caps.
"""

from __future__ import annotations

import base64
import io
import os
import select
import sys
import threading

from . import bounds, framing, notebook
from .cells import mime_bundle, safe_repr


class Displays:
    # Set by Worker.__init__ (and a cell's exec frame): the pipes, the caps, the state.
    ctrl_out: int
    ack_in: int
    send_lock: threading.Lock
    main_thread: threading.Thread
    frame_limit: int
    running: bool
    limits: dict
    displays: bounds.DisplayBudget
    clipped: bool

    def flush_streams(self) -> None:
        raise NotImplementedError  # Worker provides it

    def send(self, obj: dict) -> None:
        data = framing.encode(obj)
        with self.send_lock:
            framing.write_all_fd(self.ctrl_out, data)

    def display(self, *objs, display_id=None):
        """Show rich representations of objects (like IPython's display()); with
        display_id (a string, or True for a new one) return a DisplayHandle."""
        if display_id is True:
            display_id = notebook.new_display_id()
        display_id = None if display_id is None or display_id is False else str(display_id)
        for obj in objs:
            self.send_display(mime_bundle(obj), self._sync(), display_id)
        return None if display_id is None else notebook.DisplayHandle(self, display_id)

    def update_display(self, obj, *, display_id) -> None:
        """Replace what the display with this id shows (IPython's update_display)."""
        self.send_display(mime_bundle(obj), self._sync(), str(display_id), update=True)

    def clear_output(self, wait: bool = False) -> None:
        """Clear the cell's output so far (with wait: once the next output comes)."""
        self.flush_streams()
        self.send_ordered({"type": "clear_output", "wait": bool(wait)}, self._sync())

    def _sync(self) -> bool:
        # In the cell's own thread, wait until the supervisor has forwarded
        # what was printed before, so the display keeps its place in the output.
        return self.running and threading.current_thread() is self.main_thread

    def send_display(self, data: dict, sync: bool = False, display_id=None, update=False) -> None:
        admitted = self.displays.admit(data)
        if admitted is not data:
            self.clipped = True
            if admitted is None:
                return  # past the display cap: nothing more is sent
        frame = {"type": "display", "data": admitted}
        if display_id is not None:
            frame["display_id"] = display_id[:200]
            frame["update"] = update
        size = len(framing.encode_body(frame))
        if size > self.frame_limit - 4096:
            frame["data"] = {
                "text/plain": f"[codeexec: display output of {size} bytes omitted: "
                "larger than the frame limit]"
            }
        self.send_ordered(frame, sync)

    def send_ordered(self, frame: dict, sync: bool) -> None:
        if sync:
            self._drain_acks()
            frame["sync"] = True
        self.send(frame)
        if sync:
            while not select.select([self.ack_in], [], [])[0] or not self._drain_acks():
                pass

    def _drain_acks(self) -> bool:
        """Read pending ack bytes (stale ones from an interrupted display too)."""
        got = False
        while True:
            try:
                data = os.read(self.ack_in, 64)
            except BlockingIOError:
                return got
            if not data:
                raise BrokenPipeError("the supervisor is gone")
            got = True

    def show_value(self, value, result: dict) -> None:
        bundle = mime_bundle(value)
        if len(bundle) > 1:
            self.send_display(bundle)
        text, cut = bounds.clip_text(bundle["text/plain"], self.limits["value_limit"], "value")
        self.clipped = self.clipped or cut
        result["value"] = text

    def flush_figures(self) -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            for num in plt.get_fignums():
                fig = plt.figure(num)
                buf = io.BytesIO()
                fig.savefig(buf, format="png")
                self.send_display(
                    {
                        "image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                        "text/plain": safe_repr(fig),
                    }
                )
        except Exception as exc:
            sys.stderr.write(f"[codeexec: could not render figures: {exc!r}]\n")
        finally:
            try:
                plt.close("all")
            except Exception:
                pass
