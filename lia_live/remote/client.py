"""``lia-live --remote``: an Animator whose model runs on a ``lia-live serve`` server.

:class:`RemoteAnimator` has the Animator interface the live loop uses (``size``, ``basis``, ``device``,
``set_source``, ``source``, ``motion``, ``render``), so the live loop, its motion controller, the hotkeys and the
control panel run unchanged; only the model stage talks to the network.

One round trip per frame: the face crop goes up with a *render plan* (the reference, power and offset the
previous frame used, with "this frame's α" in place of α) and α and the animated crop come back. ``render(args)``
then returns that crop when the motion controller's arguments are what the plan said (the steady state);
otherwise (a hotkey changed the power, the reference was just taken, no face) it sends one render-only request
with the exact arguments. The server keeps the stored reference, so a reference vector travels once.

Sent ahead: the live loop's tracking thread hands each crop to :meth:`RemoteAnimator.prefetch` as soon as it is
cut, so it travels and is decoded while the model stage still waits for the frame before it; the server always
has the next frame and the model stage only collects replies. Every frame still gets its own animation (no lag).
At most ``ahead`` crops wait unclaimed; a crop whose frame the live loop then drops (a live camera's newest-frame
hand-off) is not wasted: the next frame that was not sent ahead takes its result, which is ready sooner.

Loss (see :mod:`lia_live.remote.link`): the client says so once, keeps returning the last animated crop (the
virtual camera shows a calm, still frame, never black) and reconnects by itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..imaging import check_rgb, from_tensor, resize, to_tensor
from ..log import log
from .link import Link, Refused, RemoteSource
from .protocol import decode_image, encode_image, floats, to_model, to_uint8
from .worker import FRAME, STORED

_OWN = object()

__all__ = ["RemoteAnimator", "RemoteSource"]


@dataclass
class _Pending:
    alpha: torch.Tensor
    plan: dict
    image: torch.Tensor | None
    hold: bool = False  # a frame sent while the pipe fills: show ``image`` (the last picture) as it is
    source: RemoteSource | None = None  # the portrait the crop was animated with


@dataclass
class _Ticket:
    """A crop sent ahead by the tracking thread, until the model stage claims it."""

    image: torch.Tensor  # the crop (the live loop's own tensor: claimed by identity)
    seq: int
    gen: int  # the connection it went on
    plan: dict
    source: RemoteSource
    order: int  # which crop the tracking thread cut (1, 2, ...)


class RemoteAnimator(Link):
    """The Animator interface, animated by a remote server (see the module docstring)."""

    def __init__(self, address: str, token: str, *, ca: Path | None = None, codec: str = "jpeg", quality: int = 90,
                 timeout: float = 2.0, motion_power: float = 1.0, inflight: int = 1,
                 say: Callable[[str], None] = log):
        self.inflight = max(1, int(inflight))  # frames sent and not yet answered, at most (2+: output lags)
        self._queue: deque = deque()  # (seq, spec) of the frames in flight, oldest first (inflight 2+)
        self._tickets: deque[_Ticket] = deque()  # crops sent ahead, oldest first
        self._cuts: deque = deque(maxlen=8)  # (crop, order) of the last crops prefetch() was given
        self._order = 0
        self.sent_ahead = 0  # frames whose crop had been sent ahead (prefetch) when the model stage asked
        try:
            super().__init__(address, token, ca=ca, codec=codec, quality=quality, timeout=timeout, say=say)
        except Refused as e:
            raise UserError(str(e)) from None
        self.motion_power = float(motion_power)
        self.alpha_ref: torch.Tensor | None = None
        self.device = torch.device("cpu")
        self._current: RemoteSource | None = None
        self._pending: _Pending | None = None
        self._spec = {"alpha": FRAME, "ref": FRAME, "power": self.motion_power, "offset": None}
        self._ref_values: list[float] | None = None  # the stored reference, as last sent
        self._last_alpha: torch.Tensor | None = None
        self._last_image: torch.Tensor | None = None
        info = self.info
        self.size = int(info["size"])
        self.basis = info["basis"]  # (D, M)
        self.checkpoint = Path(str(info.get("model", "remote")))
        self.model_sha256 = info.get("model_sha256")
        self.say(f"remote: animating on {self.uri} ({info.get('backend')} on {info.get('device')}, "
                 f"{self.size}², {codec} q{quality})")

    def stats(self) -> dict:
        return {**super().stats(), "sent_ahead": self.sent_ahead}

    def _forget_all(self) -> None:
        super()._forget_all()
        self._queue.clear()
        self._tickets.clear()

    # ---- the Animator interface ------------------------------------------------------------------------------
    @property
    def source(self) -> RemoteSource | None:
        return self._current

    @source.setter
    def source(self, state: RemoteSource | None) -> None:
        self._current = state

    def set_source(self, image: np.ndarray) -> RemoteSource:
        """Send the portrait (resized to the model size, PNG) once; returns its handle with α_src."""
        crop = np.ascontiguousarray(resize(check_rgb(image, "source image"), self.size))
        self._adopt()
        src = RemoteSource(crop, torch.zeros(1, self.basis.shape[1]))
        try:
            got = self._upload_here(crop)
        except Refused as e:
            self._lost(e)
            got = None
        if got is not None:
            src.id, src.alpha = got
        self._sources.append(src)
        self._current = src
        if self._last_image is None:
            self._last_image = to_model(crop)  # until the first frame comes back: the portrait itself
        return src

    def warm_up(self) -> None:
        """Nothing to warm up here: the server warmed its backend up on its model thread when it started."""

    def require_source(self) -> RemoteSource:
        if self._current is None:
            raise RuntimeError("RemoteAnimator.set_source(image) must be called before motion()/render()")
        return self._current

    def set_reference(self, frame) -> None:
        self.alpha_ref = None if frame is None else self.motion(frame if isinstance(frame, torch.Tensor)
                                                                 else to_tensor(frame, self.size))

    @property
    def relative(self) -> bool:
        return self.alpha_ref is not None

    def prefetch(self, img: torch.Tensor, ahead: int = 1) -> None:
        """Send a face crop (1, 3, S, S) ahead, from the thread that cut it; :meth:`motion` with the same tensor
        then only collects its reply. Nothing is sent while ``ahead`` crops wait unclaimed, with 2+ frames in
        flight (``inflight``: that mode lags instead), or before a portrait is set."""
        src = self._current
        self._order += 1  # the tracking thread is the only caller
        order = self._order
        with self._io:
            self._cuts.append((img, order))
            # a new connection waiting: the model stage adopts it between two of its own requests (a request it is
            # building must not change connection under it), so nothing is sent ahead until then
            if self.inflight > 1 or src is None or len(self._tickets) >= ahead or self._fresh is not None \
                    or src.id is None:
                return
            seq, plan = self._send_crop(img, src)
            if seq is not None:
                self._tickets.append(_Ticket(img, seq, self._gen, plan, src, order))

    def _send_crop(self, img: torch.Tensor, src: RemoteSource) -> tuple[int | None, dict]:
        """Send one face crop with the current plan (and the stored reference if the server lacks it)."""
        data = encode_image(to_uint8(img), self.codec, self.quality)  # before taking the lock
        with self._io:
            plan = self._spec
            header: dict = {"t": "step", "source": src.id, "render": plan}
            if plan["ref"] == STORED and not self._server_has_ref:
                header["set_ref"] = self._ref_values
            seq = self._send(header, data)
            if seq is not None and "set_ref" in header:
                self._server_has_ref = True
            return seq, plan

    def _claim(self, img: torch.Tensor) -> _Ticket | None:
        """The ticket of ``img`` if it was sent ahead on this connection; else the newest crop sent ahead of an
        earlier frame that the live loop dropped (its result stands in for this frame's: it is ready sooner).
        Crops of earlier frames are forgotten; those of later frames wait for their own."""
        with self._io:
            order = next((o for t, o in reversed(self._cuts) if t is img), None)
            if order is None:  # not a crop the tracking thread cut (a reference frame): sent on its own
                return None
            tickets, gen = list(self._tickets), self._gen
            mine = next((t for t in tickets if t.image is img), None)
            if mine is None:
                earlier = [t for t in tickets if t.order < order]
                mine = earlier[-1] if earlier else None
            self._tickets = deque(t for t in tickets if t.order > order)
        for t in tickets:
            if t.order <= order and t is not mine:
                self._forget(t.seq)
        if mine is not None and mine.gen != gen:  # sent on a connection lost since
            self._forget(mine.seq)
            return None
        return mine

    def motion(self, img: torch.Tensor) -> torch.Tensor | None:
        """α (1, M) of a face crop (1, 3, S, S) in [-1, 1]; the crop is also animated with the last plan.

        With ``inflight`` N > 1 the crop is sent and the reply to the crop sent N − 1 calls ago is returned
        (the output lags N − 1 frames); the first N − 1 calls return None (no motion yet: the controller
        holds) and show the last picture."""
        src = self.require_source()
        self._adopt()
        self._pending = None
        if self.inflight == 1:
            ticket = self._claim(img)
            if ticket is not None:
                self.sent_ahead += 1
                return self._collect(ticket.seq, ticket.plan, ticket.source)
        if src.id is None:
            return self._held_alpha()
        seq, plan = self._send_crop(img, src)
        if seq is None:
            return self._held_alpha()
        if self.inflight == 1:
            return self._collect(seq, plan, src)
        self._queue.append((seq, plan))
        if len(self._queue) < self.inflight:  # filling the pipe: no motion yet (as if no face), the last picture
            self._pending = _Pending(torch.zeros(0), {}, self._held_image(), hold=True)
            return None
        oldest, plan = self._queue.popleft()
        return self._collect(oldest, plan, src)

    def _collect(self, seq: int, plan: dict, src: RemoteSource) -> torch.Tensor:
        got = self._receive(seq)
        if got is None:
            return self._held_alpha()
        reply, data = got
        alpha = torch.tensor([reply["alpha"]], dtype=torch.float32)
        image = to_model(decode_image(data, self.size)) if data else None
        self._pending = _Pending(alpha, plan, image, source=src)
        self._last_alpha = alpha
        return alpha

    def render(self, alpha: torch.Tensor | None, alpha_ref=_OWN, power: float | None = None,
               offset: torch.Tensor | None = None) -> torch.Tensor:
        """The animated crop (1, 3, S, S) for these arguments (see :meth:`lia_live.animator.Animator.latent`)."""
        src = self.require_source()
        self._adopt()
        ref = self.alpha_ref if alpha_ref is _OWN else alpha_ref
        power = self.motion_power if power is None else float(power)
        pending, self._pending = self._pending, None
        if pending is not None and pending.hold:
            assert pending.image is not None
            return pending.image
        plan, set_ref = self._describe(alpha, ref, power, offset, None if pending is None else pending.alpha)
        if pending is not None and pending.image is not None and plan == pending.plan and set_ref is None \
                and pending.source is src:
            self._spec = plan
            return self._keep(pending.image)
        explicit = {**plan, "alpha": None if alpha is None else floats(alpha),
                    "ref": floats(ref) if plan["ref"] == FRAME else plan["ref"]}
        header: dict = {"t": "step", "source": src.id, "render": explicit}
        if set_ref is not None:
            header["set_ref"] = set_ref
        with self._io:  # the stored reference and the plan change together with what the server was sent
            seq = self._send(header) if src.id is not None else None
            if seq is not None:
                if set_ref is not None:
                    self._ref_values, self._server_has_ref = set_ref, True
                self._spec = {**plan, "alpha": FRAME}
        got = None if seq is None else self._receive(seq)
        if got is None:
            self.held_frames += 1
            return self._held_image()
        return self._keep(to_model(decode_image(got[1], self.size)))

    def step(self, frame: np.ndarray) -> np.ndarray:
        """Animate with one driving frame (RGB uint8) → RGB uint8 at the model size (the Animator's step)."""
        return from_tensor(self.render(self.motion(to_tensor(frame, self.size))))[0]

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _describe(self, alpha, ref, power: float, offset, frame_alpha) -> tuple[dict, list[float] | None]:
        """The plan for these arguments (α/reference as FRAME when they are this frame's α) and the reference
        to store first (None when the server already has it)."""
        is_frame = frame_alpha is not None and alpha is not None and (alpha is frame_alpha
                                                                      or torch.equal(alpha, frame_alpha))
        a = FRAME if is_frame else None if alpha is None else "explicit"
        set_ref = None
        if ref is None:
            r = None
        elif frame_alpha is not None and (ref is frame_alpha or torch.equal(ref, frame_alpha)):
            r = FRAME
        else:
            r, values = STORED, floats(ref)
            if values != self._ref_values or not self._server_has_ref:
                set_ref = values
        off = None if offset is None or not bool(offset.any()) else floats(offset)
        return {"alpha": a, "ref": r, "power": float(power), "offset": off}, set_ref

    def _keep(self, image: torch.Tensor) -> torch.Tensor:
        self._last_image = image
        return image

    def _held_alpha(self) -> torch.Tensor:
        if self._last_alpha is not None:
            return self._last_alpha.clone()
        return self.require_source().alpha.clone()

    def _held_image(self) -> torch.Tensor:
        assert self._last_image is not None
        return self._last_image
