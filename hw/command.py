"""The command processor: protocol packets in, buffer writes and RUN starts, responses out.

Implements the accelerator's side of docs/protocol.md, word by word: header and payload
checks in the documented order of precedence, writes into the weight, activation, residual and
parameter buffers and the threshold unit, INFO and STATUS, the RUN descriptor checks, and
exactly one response per packet, sent after the packet's TLAST.
"""

from amaranth import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from intdeploy import wire
from intdeploy.hw.descriptor import PARAM_WORDS, RUN_WORDS, assign_param, decode_param, field_bits, layout_signal
from intdeploy.hw.words import WORD_IN, WORD_OUT

__all__ = ["CommandProcessor"]

_OP = wire.OPCODES
_ST = wire.STATUS
STATUS_WORDS = wire.STATUS_PAYLOAD.words
_RUN = wire.RUN                             # descriptor field positions
CHECK_STEPS = 3 + 16 + 1          # three products, a 16-bit division, one more product
#: Opcodes whose packets are accepted while a RUN computes (the buffer writes; held when they
#: meet the RUN's entries).
OVERLAPPED = ("WRITE_WEIGHTS", "WRITE_ACTS", "WRITE_RESIDUAL")
#: Responses of packets completed during a RUN that wait for the RUN's last result word.
PENDING_DEPTH = 8


class CommandProcessor(wiring.Component):
    """Reads command packets one 32-bit word per cycle and answers each with one response.

    Every check of docs/protocol.md is made on the word that carries the field, in the
    document's order; the first failure fixes the status, the rest of the packet is dropped up
    to TLAST and the error response (header only) follows. A packet without error executes:
    writes have stored their entries as they arrived (an entry when its last word arrives),
    INFO and STATUS answer from constants and counters, RUN hands the decoded descriptor to
    the datapath on ``run``, sends the response header with the exact payload length, then
    forwards the datapath's result words from ``results`` until their ``last``.

    Overlap: while a RUN computes and its results are forwarded, the processor goes on reading
    packets. WRITE_WEIGHTS, WRITE_ACTS and WRITE_RESIDUAL execute at once, unless the entries
    they address meet the running RUN's (its activation range ``act_base ..
    act_base + (m_count-1)*row_step + k_steps - 1``, its weight range ``weight_base ..
    weight_base + n_tiles*k_steps - 1`` of its bank, its residual range with ``add``): then
    the packet waits at its first entry word until the RUN's last result word has gone, so a
    write never changes what a RUN reads. Any other packet waits at its first word. The
    responses of packets completed meanwhile (header only: writes have no payload) queue in a
    :data:`PENDING_DEPTH`-entry FIFO behind the RUN's result words, so every response still
    comes in command order; with the queue full the processor waits. The responses and
    buffers are therefore exactly those of one packet at a time.

    Timing: one word per cycle in every state that reads the input (a threshold word waits for
    the threshold unit's load port), except in the entries of WRITE_WEIGHTS, WRITE_ACTS and
    WRITE_RESIDUAL with entries of two or more words: there the processor takes two words per
    cycle whenever the input offers the next word of the same beat (``two``), so a 64-bit bus
    fills the buffers at its own rate. Both words are handled exactly as if taken one after the
    other (at most one entry completes per cycle; a pair whose second word would end the packet
    early is taken one word at a time, so TRUNCATED is found where the one-word path finds it).
    The RUN descriptor checks take :data:`CHECK_STEPS` + 1 cycles after its last word with
    ``pool`` set, 5 without (no division). After reset the processor first disables every threshold channel
    (one load beat per channel, ``threshold_channels`` cycles), as the protocol requires.

    Parameters
    ----------
    config : intdeploy.hw.config.AcceleratorConfig
    entry_layout : data layout
        A parameter buffer entry (:func:`intdeploy.hw.descriptor.param_entry_layout`).
    load_layout : data layout
        The threshold unit's load beat.
    run_layout : data layout
        The decoded descriptor (:func:`intdeploy.hw.descriptor.run_layout`).

    Attributes
    ----------
    i : ``In(stream.Signature(WORD_IN))``
        Command words.
    o : ``Out(stream.Signature(WORD_OUT))``
        Response words.
    weights, acts, residual, params : ``In(WritePort.Signature(...))``
        Write ports of the buffers (driven by this component): weights
        ``weight_banks * weight_depth`` entries (entry of bank ``b``, address ``a`` at
        ``b * weight_depth + a``), each ``weight_entry_words`` 32-bit words; acts and residual
        likewise; params one ``entry_layout`` per channel.
    thresholds : ``Out(stream.Signature(load_layout))``
        Load beats for the threshold unit (a beat with ``bits = 0`` disables a channel).
    run : ``Out(stream.Signature(run_layout))``
        One beat per RUN that passed its checks.
    results : ``In(stream.Signature(WORD_OUT))``
        The running layer's response payload words, one or two per transfer.
    results_two : ``Out(1)``
        While results are forwarded: ``o_two`` (the pair offered on ``results`` is taken).
    o_two : ``In(1)``
        The consumer of ``o`` takes a pair offered with ``has_next``
        (:attr:`intdeploy.hw.words.WordsToBeats.two`); only result words are offered in pairs.
    mac_step : ``In(1)``
        High in each cycle the MAC array accepts a step (counted for STATUS).
    two : ``Out(1)``
        With the ``i`` handshake: ``i.payload.next`` is taken too (:class:`intdeploy.hw.words.BeatsToWords`).
    """

    def __init__(self, *, config, entry_layout, load_layout, run_layout):
        self.config = c = config
        self.entry_layout = entry_layout
        self.load_layout = load_layout
        self.run_layout = run_layout
        sig = lambda depth, width: WritePort.Signature(addr_width=c.addr_bits(depth), shape=width)
        super().__init__({
            "i": In(stream.Signature(WORD_IN)),
            "o": Out(stream.Signature(WORD_OUT)),
            "weights": In(sig(c.weight_banks * c.weight_depth, unsigned(32 * c.weight_entry_words))),
            "acts": In(sig(c.act_depth, unsigned(32 * c.act_entry_words))),
            "residual": In(sig(c.residual_depth, unsigned(32 * c.residual_entry_words))),
            "params": In(sig(c.param_channels, Shape.cast(entry_layout))),
            "thresholds": Out(stream.Signature(load_layout)),
            "run": Out(stream.Signature(Shape.cast(run_layout))),
            "results": In(stream.Signature(WORD_OUT)),
            "results_two": Out(1),
            "o_two": In(1),
            "mac_step": In(1),
            "two": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        R = c.rows
        word = self.i.payload.data
        w_end = self.i.payload.end
        w_last = self.i.payload.last
        take = Signal()                      # a word is accepted this cycle
        m.d.comb += take.eq(self.i.valid & self.i.ready)
        # PAYLOAD's ready and handshake, from registers alone (the FSM state, the opcode flags,
        # pidx, the threshold unit's busy flags, the input's valid register): they enable the
        # descriptor, staging and write-port registers, hundreds of sinks, so no check of the
        # word's data may sit in front of them.
        in_payload = Signal()                # the FSM is in PAYLOAD (set there)
        ready_p = Signal()
        take_p = Signal()
        m.d.comb += take_p.eq(in_payload & self.i.valid & ready_p)

        # --- packet registers -----------------------------------------------------------
        # Only the FSM state, the threshold sweep counter and the STATUS counters have a
        # reset (docs/protocol.md: a reset clears the counters and disables every threshold
        # channel). Every other register is written before it is read in every packet: the
        # header fields and per-packet flags in HDR0/HDR1, the write addresses and threshold
        # fields by the payload words that carry them, the descriptor and its checks' operands
        # in PAYLOAD and CHECK, the response fields by the transition into RESPOND; and the
        # processor reads no command word after a reset before the SWEEP and HDR0. Leaving
        # them reset-less keeps the core reset's fan-out (the design's longest net) small.
        opcode = Signal(8, reset_less=True)
        tag = Signal(8, reset_less=True)
        length = Signal(32, reset_less=True)
        rem = Signal(32, reset_less=True)  # payload words still expected
        # Registered with `rem` (loaded in HDR1, updated on every PAYLOAD take) so that the
        # two-words decision and the end-of-payload branch read no 32-bit compare.
        rem_is_1 = Signal(reset_less=True)  # rem == 1
        rem_is_2 = Signal(reset_less=True)  # rem == 2
        rem_ge_2 = Signal(reset_less=True)  # rem >= 2
        pidx = Signal(range(RUN_WORDS + 1), reset_less=True)  # payload word index (saturating)
        status = Signal(3, reset_less=True)  # response status
        resp_len = Signal(32, reset_less=True)  # response payload words
        newbeat = Signal(reset_less=True)  # PAD: the next word starts a new beat
        after_last = Signal(reset_less=True)  # the failing word was the packet's last
        saved_end = Signal(reset_less=True)
        saved_last = Signal(reset_less=True)

        # One flag per opcode, registered with the opcode (HDR0): the word checks below select
        # among per-opcode results with these flags instead of decoding the opcode in series.
        is_op = {name: Signal(name=f"is_{name.lower()}", reset_less=True) for name in _OP}

        # --- STATUS counters --------------------------------------------------------------
        n_commands = Signal(32)
        n_errors = Signal(32)
        last_error = Signal(8)
        cycles = Signal(64)
        busy_cycles = Signal(64)
        mac_cycles = Signal(64)
        busy = Signal()
        counted = Signal()                   # the packet in hand is answered (or queued) now
        run_counted = Signal()               # the forwarded RUN's last result word goes now
        m.d.sync += [cycles.eq(cycles + 1), n_commands.eq(n_commands + counted + run_counted)]
        with m.If(counted & (status != 0)):
            m.d.sync += [n_errors.eq(n_errors + 1), last_error.eq(status)]
        with m.If(busy):
            m.d.sync += busy_cycles.eq(busy_cycles + 1)
        with m.If(self.mac_step):
            m.d.sync += mac_cycles.eq(mac_cycles + 1)
        snapshot = [Signal(32, name=f"status{k}", reset_less=True) for k in range(STATUS_WORDS)]

        # --- staging of multi-word entries ------------------------------------------------
        stage_words = max(c.weight_entry_words, c.act_entry_words, c.residual_entry_words,
                          PARAM_WORDS) - 1
        stage = [Signal(32, name=f"stage{k}", reset_less=True) for k in range(max(stage_words, 1))]
        ew = Signal(range(max(stage_words + 1, PARAM_WORDS)), reset_less=True)  # word within the entry
        e_addr = Signal(32, reset_less=True)  # buffer row of the entry being received
        e_count = Signal(32, reset_less=True)  # entries of the command
        bank = Signal(32, reset_less=True)
        first = Signal(32, reset_less=True)  # address / first channel word
        # Two words per cycle in the entries of a buffer write (set in PAYLOAD): the second
        # one, `nxt`, goes to the next staging register, or starts the next entry when `word`
        # completes one.
        nxt = self.i.payload.next
        pair = Signal()                      # this cycle takes `word` and `nxt`
        m.d.comb += self.two.eq(pair)
        word_ends_entry = Signal()           # `word` is the last word of its entry
        with m.If(take_p):
            for k in range(len(stage)):
                with m.If(ew == k):
                    m.d.sync += stage[k].eq(word)
            with m.If(pair):
                for k in range(len(stage)):
                    with m.If(Mux(word_ends_entry, 0, ew + 1) == k):
                        m.d.sync += stage[k].eq(nxt)

        # --- thresholds -------------------------------------------------------------------
        thr_ch = Signal(32, reset_less=True)
        thr_q = Signal(4, reset_less=True)
        thr_neg = Signal(reset_less=True)
        thr_idx = Signal(8, reset_less=True)
        thr_touched = Signal(reset_less=True)  # a threshold of this packet has been stored
        sweep = Signal(range(c.threshold_channels + 1))

        # --- RUN descriptor ---------------------------------------------------------------
        run = layout_signal(self.run_layout, name="run", reset_less=True)
        d_count_bad = Signal(reset_less=True)  # a count outside 1..65535
        d_act_base = Signal(32, reset_less=True)
        d_bank = Signal(32, reset_less=True)
        d_weight_base = Signal(32, reset_less=True)
        d_channel_base = Signal(32, reset_less=True)
        d_epilogue = Signal(2, reset_less=True)
        d_ob = Signal(2, reset_less=True)
        d_rq_bad = Signal(reset_less=True)  # an add requantizer with an invalid field
        d_pool_mode = Signal(2, reset_less=True)
        d_taps = Signal(8, reset_less=True)
        d_pool_d = Signal(6, reset_less=True)
        d_pool_mult = Signal(32, reset_less=True)
        d_res_base = Signal(31, reset_less=True)
        d_pool_lohi_bad = Signal(reset_less=True)

        # --- overlap with a running RUN -----------------------------------------------------
        fwd = Signal()                       # a RUN computes; its result words go out
        m.submodules.pending = pending = SyncFIFO(width=19, depth=PENDING_DEPTH)
        out_busy = Signal()                  # responses ahead of the packet in hand
        m.d.comb += out_busy.eq(fwd | pending.r_rdy)
        # The running RUN's entries (ends exclusive, all within their buffers after CHECK).
        hi_bits = c.addr_bits(max(c.weight_depth, c.act_depth, c.residual_depth)) + 1
        r_act_hi = Signal(hi_bits, reset_less=True)
        r_w_hi = Signal(hi_bits, reset_less=True)
        r_res_hi = Signal(hi_bits, reset_less=True)

        # --- combinational word checks ----------------------------------------------------
        def per_write(f):
            # f(payload words before the entries, words per entry, buffer depth) for each write
            # command, each with its constants (no multiplier, no compare against a selected
            # depth), then one select by the opcode flags; WRITE_PARAMS' for any other opcode.
            return Mux(is_op["WRITE_WEIGHTS"], f(3, c.weight_entry_words, c.weight_depth),
                       Mux(is_op["WRITE_ACTS"], f(2, c.act_entry_words, c.act_depth),
                           Mux(is_op["WRITE_RESIDUAL"], f(2, c.residual_entry_words, c.residual_depth),
                               f(2, PARAM_WORDS, c.param_channels))))
        entry_words = Signal(4 + c.weight_entry_words.bit_length())
        m.d.comb += entry_words.eq(per_write(lambda hdr, words, depth: words))
        hdr_words = Signal(2)                # payload words before the entries
        m.d.comb += hdr_words.eq(per_write(lambda hdr, words, depth: hdr))
        is_write = is_op["WRITE_WEIGHTS"] | is_op["WRITE_ACTS"] | is_op["WRITE_RESIDUAL"] | \
            is_op["WRITE_PARAMS"]
        # pidx >= hdr_words, registered with pidx (cleared in HDR0, set by the take of the
        # last header word: pidx rises by one per take there) so that PAYLOAD's handshake and
        # the entry logic read no compare of pidx.
        in_entries = Signal(reset_less=True)

        # Count word: range first (exact, 33 bits), then the length it implies.
        count_oor = Signal()
        count_len = Signal()
        cnt_small = word[:max(c.addr_bits(max(c.weight_depth, c.act_depth, c.residual_depth,
                                                 c.param_channels)) + 1, 1)]
        m.d.comb += [
            count_oor.eq((word == 0) | per_write(lambda hdr, words, depth: first + word > depth)),
            count_len.eq(per_write(lambda hdr, words, depth: length != hdr + cnt_small * words)),
        ]

        # Parameter block (WRITE_PARAMS entries, and the RUN descriptor's add requantizers).
        pwords = stage[:PARAM_WORDS - 1] + [word]
        p_fields, _, p_reserved_ok = decode_param(pwords)
        # The field checks read words 0..6 only: computed when word 6 is taken (from the staged
        # words 0..5 and the input word) and registered, so the last word's error logic reads a
        # flip-flop. Words 6 and 7 of a parameter block are taken one at a time (pairs are only
        # taken in the entries of buffer writes), so the flag is that of the current block.
        p_fields_ok = Signal(reset_less=True)
        with m.If(take_p & (ew == PARAM_WORDS - 2)):
            m.d.sync += p_fields_ok.eq(decode_param(stage[:PARAM_WORDS - 2] + [word, Const(0, 32)])[1])
        p_valid = p_fields_ok & p_reserved_ok
        p_entry = layout_signal(self.entry_layout, name="p_entry")
        m.d.comb += assign_param(p_entry, p_fields)

        # Thresholds.
        q_word = word[0:4]
        thr_ok = Signal()
        # word >= the threshold before it (the previous word of the packet), compared when the
        # beat was registered (:data:`intdeploy.hw.words.WORD_IN` ``ge_prev``).
        m.d.comb += thr_ok.eq((thr_idx == 0) | self.i.payload.ge_prev)
        thr_len = Signal(32)
        m.d.comb += thr_len.eq(1 + (Const(1, 10) << q_word))

        # Does the write in hand (its address in ``first``, its count on the input) meet the
        # running RUN's entries? Registered at the count word (``hold_back``) and used only when
        # its address and count passed their checks, so both are within the buffer and the
        # narrow sums are exact. The packet's entry words then wait while the RUN's results
        # go out: the count word writes no buffer, so waiting at the first entry word instead
        # of at the count word changes nothing but the cycle, and keeps the 33-bit sums and
        # compares out of ``i.ready``.
        hold_back = Signal(reset_less=True)  # written at HDR0 and at the count word
        meets = Signal()
        w_lo = first[:hi_bits]
        w_hi = Signal(hi_bits + 1)
        m.d.comb += w_hi.eq(w_lo + cnt_small)

        def hits(lo, hi):
            return (w_lo < hi) & (lo[:hi_bits] < w_hi)
        m.d.comb += meets.eq(Mux(is_op["WRITE_ACTS"], hits(d_act_base, r_act_hi),
                                 Mux(is_op["WRITE_WEIGHTS"], (bank == d_bank) & hits(d_weight_base, r_w_hi),
                                     is_op["WRITE_RESIDUAL"] & run.add & hits(d_res_base, r_res_hi))))

        # --- buffer write ports -----------------------------------------------------------
        buffer_words = dict(zip(OVERLAPPED, (c.weight_entry_words, c.act_entry_words,
                                             c.residual_entry_words)))   # words per entry
        nxt_ends_entry = Signal()            # with `pair`: `nxt` completes the entry
        m.d.comb += [word_ends_entry.eq(ew == entry_words - 1), nxt_ends_entry.eq(ew == entry_words - 2)]

        def entry_data(words):
            # The entry's earlier words from the staging registers, its last word (or two) from
            # the input.
            one = Cat(*stage[:words - 1], word)
            if words < 2:
                return one
            return Mux(pair & nxt_ends_entry, Cat(*stage[:words - 2], word, nxt), one)
        entry_done = Signal()                # this cycle completes an entry of a write command
        m.d.comb += entry_done.eq(take_p & is_write & in_entries &
                                  (word_ends_entry | (pair & nxt_ends_entry)))
        for op, port in zip(OVERLAPPED, (self.weights, self.acts, self.residual)):
            m.d.comb += [port.addr.eq(e_addr), port.data.eq(entry_data(buffer_words[op])),
                         port.en.eq(entry_done & is_op[op])]
        param_write = Signal()
        m.d.comb += [self.params.addr.eq(e_addr), self.params.data.eq(p_entry),
                     self.params.en.eq(param_write)]

        # --- threshold load port ----------------------------------------------------------
        thr_load = Signal()                  # PAYLOAD offers the current threshold word
        tl = self.thresholds.payload
        with m.If(thr_load):
            m.d.comb += [tl.channel.eq(thr_ch), tl.index.eq(thr_idx), tl.value.eq(word),
                         tl.bits.eq(Mux(thr_ok, thr_q, 0)), tl.negate.eq(thr_neg)]

        # --- response words ---------------------------------------------------------------
        resp_idx = Signal(32, reset_less=True)
        header0 = Cat(opcode, tag, status, Const(0, 8))
        info = c.info_words()
        payload_word = Signal(32)
        with m.Switch(resp_idx):
            with m.Case(0):
                m.d.comb += payload_word.eq(header0)
            with m.Case(1):
                m.d.comb += payload_word.eq(resp_len)
            for k in range(max(len(info), STATUS_WORDS)):
                with m.Case(2 + k):
                    inf = Const(info[k], 32) if k < len(info) else Const(0, 32)
                    sta = snapshot[k] if k < STATUS_WORDS else Const(0, 32)
                    m.d.comb += payload_word.eq(Mux(is_op["STATUS"], sta, inf))

        # The descriptor register stays unchanged until the RUN's last result word has gone.
        m.d.comb += self.run.payload.eq(run)

        # --- the packet state machine -----------------------------------------------------
        chk = Signal(range(CHECK_STEPS + 2), reset_less=True)
        mul_a = Signal(16)
        mul_b = Signal(16)
        product = Signal(32)
        m.d.comb += product.eq(mul_a * mul_b)
        p_mk = Signal(33, reset_less=True)
        p_nk = Signal(32, reset_less=True)
        p_nm = Signal(32, reset_less=True)
        p_no = Signal(32, reset_less=True)
        div_r = Signal(17, reset_less=True)
        div_q = Signal(16, reset_less=True)
        mult_t = Signal(40, reset_less=True)  # avg_nemo: mult * T, compared with 2**d
        pow_d = Signal(64, reset_less=True)
        run_words = Signal(40)             # RUN response payload words (valid after CHECK)
        total = p_no * R
        total_bytes = Mux(d_ob == 0, total, Mux(d_ob == 1, total << 1, total << 2))
        m.d.comb += run_words.eq((total_bytes + 3) >> 2)

        def count_response():
            m.d.comb += counted.eq(1)

        def fail(code, is_last, touched):
            m.d.sync += [status.eq(code), resp_len.eq(0), resp_idx.eq(0), after_last.eq(is_last)]
            with m.If(touched):
                m.next = "DISABLE"
            with m.Elif(is_last):
                m.next = "RESPOND"
            with m.Else():
                m.next = "DROP"

        def complete(snap):
            # The packet ended without error: answer it (RUN starts its datapath first).
            # ``snap``: a STATUS packet can end here (HDR1 and PAD; its length is 0), so the
            # counters are copied for its payload. PAYLOAD and CHECK pass False: their word
            # checks (33-bit sums and compares) would otherwise sit in front of the enable of
            # the 9 x 32 snapshot registers.
            m.d.sync += [status.eq(_ST["OK"]), resp_idx.eq(0)]
            with m.If(is_op["RUN"]):
                m.d.sync += resp_len.eq(run_words)
                m.next = "RUN_START"
            with m.Else():
                m.d.sync += resp_len.eq(Mux(is_op["INFO"], len(info),
                                            Mux(is_op["STATUS"], STATUS_WORDS, 0)))
                if snap:
                    m.d.sync += [snapshot[k].eq(v) for k, v in enumerate([
                        n_commands, n_errors, last_error, cycles[:32], cycles[32:],
                        busy_cycles[:32], busy_cycles[32:], mac_cycles[:32], mac_cycles[32:]])]
                m.next = "RESPOND"

        def after_payload(end, last, snap):
            with m.If(last):
                complete(snap)
            with m.Else():
                m.d.sync += newbeat.eq(end)
                m.next = "PAD"

        def capture_descriptor():
            # Descriptor fields as their words arrive (positions from wire.RUN); the checks run
            # in CHECK. Counts keep their low 16 bits (the checks refuse larger ones).
            k = pidx
            bits = lambda name: field_bits([word] * RUN_WORDS, _RUN[name])        # noqa: E731
            with m.Switch(k):
                for field in ("m_count", "k_steps", "n_tiles"):
                    with m.Case(_RUN[field].word):
                        m.d.sync += [run[field].eq(word[:16]),
                                     d_count_bad.eq(d_count_bad | (word == 0) | (word[16:] != 0))]
                with m.Case(_RUN["act_base"].word):
                    m.d.sync += [d_act_base.eq(word), run.act_base.eq(word)]
                with m.Case(_RUN["bank"].word):
                    m.d.sync += [d_bank.eq(word), run.bank.eq(word)]
                with m.Case(_RUN["weight_base"].word):
                    m.d.sync += [d_weight_base.eq(word), run.weight_base.eq(word)]
                with m.Case(_RUN["channel_base"].word):
                    m.d.sync += [d_channel_base.eq(word), run.channel_base.eq(word)]
                with m.Case(_RUN["x_signed"].word):
                    zp = bits("x_zero_point")
                    m.d.sync += [run.x_signed.eq(bits("x_signed")),
                                 run.x_zp.eq(Mux(bits("x_signed"), zp.as_signed(), zp)),
                                 run.row_step.eq(bits("row_step"))]
                with m.Case(_RUN["epilogue"].word):
                    m.d.sync += [d_epilogue.eq(bits("epilogue")),
                                 run.threshold.eq(bits("epilogue") == wire.EPILOGUES["threshold"]),
                                 run.add.eq(bits("add")), run.pool.eq(bits("pool")),
                                 d_ob.eq(bits("out_bytes")), run.out_bytes.eq(bits("out_bytes"))]
                with m.Case(_RUN["residual_base"].word):
                    m.d.sync += [d_res_base.eq(bits("residual_base")), run.residual_base.eq(bits("residual_base")),
                                 run.residual_signed.eq(bits("residual_signed"))]
                with m.Case(_RUN["add_zero_point_a"].word):
                    m.d.sync += run.add_zp_a.eq(word)
                with m.Case(_RUN["add_zero_point_b"].word):
                    m.d.sync += run.add_zp_b.eq(word)
                with m.Case(_RUN["add_left_shift"].word):
                    m.d.sync += [run.add_left_shift.eq(bits("add_left_shift")),
                                 run.add_sum_shift.eq(bits("add_sum_shift")), ew.eq(0)]
                for name, field in (("add_a", "add_a"), ("add_b", "add_b"), ("add_out", "add_out")):
                    # the block's last word: its fields come from the staged words and this one
                    with m.Case(_RUN[name].word + PARAM_WORDS - 1):
                        m.d.sync += [run[field][member].eq(p_entry.rq[member])
                                     for member in p_entry.rq.shape().members]
                        m.d.sync += d_rq_bad.eq(d_rq_bad | ~p_fields_ok)
                with m.Case(_RUN["pool_mode"].word):
                    m.d.sync += [d_pool_mode.eq(bits("pool_mode")), run.pool_mode.eq(bits("pool_mode")),
                                 d_taps.eq(bits("pool_taps")), run.pool_taps.eq(bits("pool_taps")),
                                 d_pool_d.eq(bits("pool_d")), run.pool_d.eq(bits("pool_d"))]
                with m.Case(_RUN["pool_mult"].word):
                    m.d.sync += [d_pool_mult.eq(word), run.pool_mult.eq(word)]
                with m.Case(_RUN["pool_lo"].word):
                    lo, hi = bits("pool_lo"), bits("pool_hi")
                    m.d.sync += [run.pool_lo.eq(lo), run.pool_hi.eq(hi),
                                 d_pool_lohi_bad.eq(lo.as_signed() > hi.as_signed())]
            first_rq, last_rq = _RUN["add_a"].word, _RUN["add_out"].word + PARAM_WORDS - 1
            with m.If((k >= first_rq) & (k <= last_rq)):
                m.d.sync += ew.eq(Mux(ew == PARAM_WORDS - 1, 0, ew + 1))

        def check_descriptor():
            # The RUN checks of docs/protocol.md, in order, after the last descriptor word:
            # three 16x16 products on one multiplier, m_count / taps by restoring division,
            # then the number of result words.
            n, mc, ks = run.n_tiles, run.m_count, run.k_steps
            m.d.sync += chk.eq(chk + 1)
            with m.Switch(chk):
                with m.Case(0):
                    # the last activation entry read is act_base + (m_count - 1) * row_step + k_steps - 1
                    m.d.comb += [mul_a.eq(mc - 1), mul_b.eq(Mux(run.row_step == 0, ks, run.row_step))]
                    m.d.sync += p_mk.eq(product + ks)
                with m.Case(1):
                    m.d.comb += [mul_a.eq(n), mul_b.eq(ks)]
                    m.d.sync += p_nk.eq(product)
                with m.Case(2):
                    m.d.comb += [mul_a.eq(n), mul_b.eq(mc)]
                    m.d.sync += [p_nm.eq(product), div_r.eq(0), div_q.eq(mc)]
                    with m.If(~run.pool):           # no division: outputs = m_count
                        m.d.sync += chk.eq(CHECK_STEPS - 1)
                with m.Case(CHECK_STEPS - 1):
                    outputs = Mux(run.pool, div_q, mc)
                    m.d.comb += [mul_a.eq(n), mul_b.eq(outputs)]
                    m.d.sync += [p_no.eq(product), run.outputs.eq(outputs)]
                with m.Case(CHECK_STEPS):
                    e = Signal(3)
                    m.d.sync += [r_act_hi.eq(d_act_base + p_mk), r_w_hi.eq(d_weight_base + p_nk),
                                 r_res_hi.eq(d_res_base + p_nm)]
                    chans = d_channel_base + n * R
                    nemo_bad = ((d_pool_d > c.max_pool_shift) | (d_pool_mult == 0) |
                                (mult_t > pow_d) | (pow_d >= mult_t + d_taps))
                    with m.If(d_count_bad):
                        m.d.comb += e.eq(_ST["OUT_OF_RANGE"])
                    with m.Elif(d_act_base + p_mk > c.act_depth):
                        m.d.comb += e.eq(_ST["OUT_OF_RANGE"])
                    with m.Elif((d_bank >= c.weight_banks) | (d_weight_base + p_nk > c.weight_depth)):
                        m.d.comb += e.eq(_ST["OUT_OF_RANGE"])
                    with m.Elif((chans > c.param_channels) |
                                ((d_epilogue == 1) & (chans > c.threshold_channels))):
                        m.d.comb += e.eq(_ST["OUT_OF_RANGE"])
                    align = wire.threshold_alignment(R)
                    misaligned = (d_epilogue == 1) & ((d_channel_base[:align.bit_length() - 1] != 0)
                                                      if align > 1 else 0)
                    with m.Elif((d_epilogue > 1) | (d_ob == 3) | misaligned):
                        m.d.comb += e.eq(_ST["BAD_PARAM"])
                    with m.Elif(run.add & (d_res_base + p_nm > c.residual_depth)):
                        m.d.comb += e.eq(_ST["OUT_OF_RANGE"])
                    with m.Elif(run.add & d_rq_bad):
                        m.d.comb += e.eq(_ST["BAD_PARAM"])
                    with m.Elif(run.pool & ((d_pool_mode == 3) | (d_taps == 0) |
                                            (d_taps > c.max_pool_taps) | (div_r != 0) |
                                            ((d_pool_mode == 1) & nemo_bad) |
                                            ((d_pool_mode == 2) & d_pool_lohi_bad))):
                        m.d.comb += e.eq(_ST["BAD_PARAM"])
                    with m.If(e != 0):
                        fail(e, saved_last, 0)
                    with m.Else():
                        after_payload(saved_end, saved_last, False)
                with m.Default():
                    m.d.sync += [mult_t.eq(d_pool_mult * d_taps), pow_d.eq(1 << d_pool_d)]
                    # Restoring division, one quotient bit per cycle.
                    shifted = Cat(div_q[15], div_r[:16])
                    fits = shifted >= d_taps
                    m.d.sync += [div_r.eq(Mux(fits, shifted - d_taps, shifted)),
                                 div_q.eq(Cat(fits, div_q[:15]))]

        with m.FSM(init="SWEEP"):
            with m.State("SWEEP"):
                # Disable every threshold channel (protocol: state after a reset).
                m.d.comb += [self.thresholds.valid.eq(1), tl.channel.eq(sweep)]
                with m.If(self.thresholds.ready):
                    m.d.sync += sweep.eq(sweep + 1)
                    with m.If(sweep == c.threshold_channels - 1):
                        m.next = "HDR0"

            with m.State("HDR0"):
                op = word[0:8]
                # During a RUN only the writes of OVERLAPPED start; anything else waits.
                m.d.comb += self.i.ready.eq(~out_busy | Cat(*[op == _OP[n] for n in OVERLAPPED]).any())
                known = (op >= 1) & (op <= 8)
                with m.If(take):
                    m.d.sync += [is_op[name].eq(op == code) for name, code in _OP.items()]
                    m.d.sync += [opcode.eq(op), tag.eq(word[8:16]), thr_touched.eq(0),
                                 hold_back.eq(0), pidx.eq(0), in_entries.eq(0), ew.eq(0), thr_idx.eq(0),
                                 d_count_bad.eq(0), d_rq_bad.eq(0)]
                    with m.If(~known):
                        fail(_ST["UNKNOWN_OPCODE"], w_last, 0)
                    with m.Elif(word[16:32] != 0):
                        fail(_ST["BAD_HEADER"], w_last, 0)
                    with m.Elif(w_last):
                        fail(_ST["TRUNCATED"], 1, 0)
                    with m.Else():
                        m.next = "HDR1"

            with m.State("HDR1"):
                m.d.comb += self.i.ready.eq(1)
                fixed = is_op["INFO"] | is_op["STATUS"] | is_op["RUN"]
                need = Mux(is_op["RUN"], RUN_WORDS, 0)
                shortest = Mux(is_op["WRITE_WEIGHTS"], 3, 2)
                with m.If(take):
                    m.d.sync += [length.eq(word), rem.eq(word), rem_is_1.eq(word == 1),
                                 rem_is_2.eq(word == 2), rem_ge_2.eq(word >= 2)]
                    with m.If(Mux(fixed, word != need, word < shortest)):
                        fail(_ST["BAD_LENGTH"], w_last, 0)
                    with m.Elif(word == 0):
                        after_payload(w_end, w_last, True)
                    with m.Elif(w_last):
                        fail(_ST["TRUNCATED"], 1, 0)
                    with m.Else():
                        m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                m.d.comb += in_payload.eq(1)
                err = Signal(3)
                is_thr = is_op["WRITE_THRESHOLDS"] & in_entries  # pidx >= 2 (hdr_words is 2)
                stores_thr = is_thr & thr_ok
                # Every threshold word goes to the load port, a failing one (``thr_ok`` low) as
                # a beat that disables the channel: the handshake does not wait for the 32-bit
                # compare. The failing word ends the packet and DISABLE follows, so the channel
                # stays disabled, and the value it wrote is never read (a channel reads only the
                # 2**q - 1 thresholds of the complete write that enables it).
                m.d.comb += [
                    thr_load.eq(is_thr),
                    self.thresholds.valid.eq(self.i.valid & is_thr),
                    ready_p.eq(Mux(is_thr, self.thresholds.ready, ~(hold_back & fwd))),
                    self.i.ready.eq(ready_p),
                ]
                # Two words at once: entries of a buffer write of two or more words per entry,
                # the next word in the same beat, and that word not ending the packet early.
                pi = self.i.payload
                m.d.comb += pair.eq(Cat(Const(0, 1), *[is_op[op] for op in OVERLAPPED if buffer_words[op] >= 2]).any())
                with m.If(~in_entries | ~pi.has_next | ~rem_ge_2 | (pi.next_last & ~rem_is_2)):
                    m.d.comb += pair.eq(0)
                with m.If(take_p):
                    m.d.sync += [rem.eq(rem - 1 - pair),
                                 pidx.eq(Mux(pidx + 1 + pair >= RUN_WORDS, RUN_WORDS, pidx + 1 + pair))]
                    with m.If(pidx == hdr_words - 1):
                        m.d.sync += in_entries.eq(1)
                    # The flags of rem - 1 - pair, from compares of the register `rem`.
                    m.d.sync += [rem_is_1.eq(Mux(pair, rem == 3, rem == 2)),
                                 rem_is_2.eq(Mux(pair, rem == 4, rem == 3)),
                                 rem_ge_2.eq(Mux(pair, rem >= 4, rem >= 3))]
                # Field checks, per command (docs/protocol.md, each command's "Checks").
                with m.If(is_op["WRITE_WEIGHTS"] & (pidx == 0)):
                    m.d.comb += err.eq(Mux(word >= c.weight_banks, _ST["OUT_OF_RANGE"], 0))
                with m.Elif(is_write & (pidx == hdr_words - 2)):
                    m.d.comb += err.eq(Mux(per_write(lambda hdr, words, depth: word >= depth),
                                           _ST["OUT_OF_RANGE"], 0))
                with m.Elif(is_write & (pidx == hdr_words - 1)):
                    m.d.comb += err.eq(Mux(count_oor, _ST["OUT_OF_RANGE"],
                                           Mux(count_len, _ST["BAD_LENGTH"], 0)))
                with m.Elif(is_op["WRITE_PARAMS"] & in_entries & (ew == PARAM_WORDS - 1)):
                    m.d.comb += err.eq(Mux(p_valid, 0, _ST["BAD_PARAM"]))
                with m.Elif(is_op["WRITE_THRESHOLDS"] & (pidx == 0)):
                    m.d.comb += err.eq(Mux(word >= c.threshold_channels, _ST["OUT_OF_RANGE"], 0))
                with m.Elif(is_op["WRITE_THRESHOLDS"] & (pidx == 1)):
                    m.d.comb += err.eq(Mux((q_word == 0) | (q_word > c.max_q), _ST["BAD_PARAM"],
                                           Mux(length != thr_len, _ST["BAD_LENGTH"], 0)))
                with m.Elif(is_thr):
                    m.d.comb += err.eq(Mux(thr_ok, 0, _ST["BAD_PARAM"]))

                with m.If(take_p):
                    # Field capture and buffer writes.
                    with m.If(is_op["WRITE_WEIGHTS"] & (pidx == 0)):
                        m.d.sync += bank.eq(word)
                    with m.If(is_write & (pidx == hdr_words - 2)):
                        m.d.sync += first.eq(word)
                    with m.If(is_write & (pidx == hdr_words - 1)):
                        base = Mux(is_op["WRITE_WEIGHTS"], bank[:4] * c.weight_depth, 0)
                        m.d.sync += [e_count.eq(word), e_addr.eq(base + first), ew.eq(0)]
                        # A valid write that meets the running RUN's entries waits for its end.
                        m.d.sync += hold_back.eq(meets)
                    with m.If(is_write & in_entries):
                        m.d.sync += ew.eq(ew + 1 + pair)
                        with m.If(word_ends_entry):
                            m.d.sync += [ew.eq(pair), e_addr.eq(e_addr + 1)]
                        with m.Elif(pair & nxt_ends_entry):
                            m.d.sync += [ew.eq(0), e_addr.eq(e_addr + 1)]
                    with m.If(is_op["WRITE_PARAMS"] & in_entries & (ew == PARAM_WORDS - 1) & p_valid):
                        m.d.comb += param_write.eq(1)
                    with m.If(is_op["WRITE_THRESHOLDS"] & (pidx == 0)):
                        m.d.sync += thr_ch.eq(word)
                    with m.If(is_op["WRITE_THRESHOLDS"] & (pidx == 1)):
                        m.d.sync += [thr_q.eq(q_word), thr_neg.eq(word[8])]
                    with m.If(stores_thr):
                        m.d.sync += [thr_idx.eq(thr_idx + 1), thr_touched.eq(1)]
                    with m.If(is_op["RUN"]):
                        capture_descriptor()
                        # Read only in CHECK, which only the last word's take below enters:
                        # written on every take so that their enables skip the word checks.
                        m.d.sync += [saved_end.eq(w_end), saved_last.eq(w_last), chk.eq(0)]

                    touched = thr_touched | stores_thr
                    with m.If(err != 0):
                        fail(err, w_last, touched)
                    with m.Elif(pair & rem_is_2):
                        after_payload(pi.next_end, pi.next_last, False)
                    with m.Elif(rem_is_1):
                        with m.If(is_op["RUN"]):
                            m.next = "CHECK"
                        with m.Else():
                            after_payload(w_end, w_last, False)
                    with m.Elif(w_last):
                        fail(_ST["TRUNCATED"], 1, touched)

            with m.State("CHECK"):
                check_descriptor()

            with m.State("PAD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take):
                    with m.If(newbeat):
                        fail(_ST["BAD_LENGTH"], w_last, thr_touched)
                    with m.Elif(w_last):
                        complete(True)
                    with m.Else():
                        m.d.sync += newbeat.eq(w_end)

            with m.State("DISABLE"):
                # A failed threshold write disables its channel (protocol, WRITE_THRESHOLDS).
                m.d.comb += [self.thresholds.valid.eq(1), tl.channel.eq(thr_ch)]
                with m.If(self.thresholds.ready):
                    m.d.sync += thr_touched.eq(0)
                    with m.If(after_last):
                        m.next = "RESPOND"
                    with m.Else():
                        m.next = "DROP"

            with m.State("DROP"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(take & w_last):
                    m.next = "RESPOND"

            with m.State("RESPOND"):
                with m.If(out_busy):
                    # Only a packet of OVERLAPPED gets here while responses are ahead of it:
                    # its response is its header alone, queued behind them.
                    m.d.comb += [pending.w_en.eq(1), pending.w_data.eq(header0[:19])]
                    with m.If(pending.w_rdy):
                        count_response()
                        m.next = "HDR0"
                with m.Else():
                    m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(payload_word)]
                    done = Signal()
                    m.d.comb += done.eq(Mux(is_op["RUN"] & (status == 0), resp_idx == 1,
                                            resp_idx == resp_len + 1))
                    m.d.comb += self.o.payload.last.eq(done & ~(is_op["RUN"] & (status == 0)))
                    with m.If(self.o.ready):
                        m.d.sync += resp_idx.eq(resp_idx + 1)
                        with m.If(done):
                            with m.If(is_op["RUN"] & (status == 0)):
                                # The results follow from the datapath while packets go on.
                                m.d.sync += fwd.eq(1)
                            with m.Else():
                                count_response()
                            m.next = "HDR0"

            with m.State("RUN_START"):
                m.d.comb += [busy.eq(1), self.run.valid.eq(1)]
                with m.If(self.run.ready):
                    m.next = "RESPOND"

        # --- the response stream after a RUN's header ---------------------------------------
        # The RUN's result words, then the queued headers (word 0 from the queue, word 1 the
        # length 0); the FSM's RESPOND drives the stream only when both are done.
        second = Signal()                    # the queued header's word 1 is next
        with m.If(fwd):
            rp = self.results.payload
            pair = self.o_two & rp.has_next
            m.d.comb += [busy.eq(1), self.o.valid.eq(self.results.valid),
                         self.o.payload.eq(rp), self.results_two.eq(self.o_two),
                         self.results.ready.eq(self.o.ready)]
            with m.If(self.results.valid & self.o.ready & Mux(pair, rp.next_last, rp.last)):
                m.d.comb += run_counted.eq(1)
                m.d.sync += fwd.eq(0)
        with m.Elif(pending.r_rdy):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(Mux(second, 0, pending.r_data)),
                         self.o.payload.last.eq(second)]
            with m.If(self.o.ready):
                m.d.sync += second.eq(~second)
                m.d.comb += pending.r_en.eq(second)
        return m
