"""A converter from text NL to binary NL, written from the format's
specification (Gay, "Writing .nl Files"): the ten header lines stay text with
the first letter `b`; every segment after them is binary: one byte for a
segment letter, expression code or bound type, 4-byte integers, 8-byte
doubles, little endian. Covers the segments Pyomo writes for linear and
mixed-integer models (C O x d r b k J G S)."""

import struct


def _num(tok):
    return float(tok) if any(c in tok for c in ".eEnN") else int(tok)


def convert(text):
    lines = text.split("\n")
    header = lines[:10]
    assert header[0].startswith("g"), "not a text NL file"
    out = bytearray(("b" + header[0][1:] + "\n").encode())
    for h in header[1:]:
        out += (h + "\n").encode()
    i = 10

    def toks(k):
        return lines[k].split("#")[0].split()

    def I(v):
        out.extend(struct.pack("<i", int(v)))

    def D(v):
        out.extend(struct.pack("<d", float(v)))

    def expr(k):
        # Linear models only carry constants (n, s, l) in C and O segments.
        t = lines[k].strip()
        if t[0] == "n":
            out.extend(b"n")
            D(t[1:])
        elif t[0] in "sl":
            out.extend(b"n")
            D(int(t[1:]))
        else:
            raise ValueError("nonlinear expression: " + t)
        return k + 1

    ncons = int(header[1].split()[1])
    nvars = int(header[1].split()[0])
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        seg, rest = line[0], line[1:].split("#")[0].split()
        if seg == "C":
            out.extend(b"C")
            I(rest[0])
            i = expr(i + 1)
        elif seg == "O":
            out.extend(b"O")
            I(rest[0])
            I(rest[1])
            i = expr(i + 1)
        elif seg in "xd":
            out.extend(seg.encode())
            I(rest[0])
            for k in range(int(rest[0])):
                a, b = toks(i + 1 + k)
                I(a)
                D(b)
            i += 1 + int(rest[0])
        elif seg in "rb":
            out.extend(seg.encode())
            n = ncons if seg == "r" else nvars
            for k in range(n):
                t = toks(i + 1 + k)
                out.extend(t[0].encode())
                for v in t[1:]:
                    D(v)
            i += 1 + n
        elif seg == "k":
            out.extend(b"k")
            I(rest[0])
            for k in range(int(rest[0])):
                I(toks(i + 1 + k)[0])
            i += 1 + int(rest[0])
        elif seg in "JG":
            out.extend(seg.encode())
            I(rest[0])
            I(rest[1])
            for k in range(int(rest[1])):
                a, b = toks(i + 1 + k)
                I(a)
                D(b)
            i += 1 + int(rest[1])
        elif seg == "S":
            kind, n, name = int(rest[0]), int(rest[1]), rest[2]
            out.extend(b"S")
            I(kind)
            I(n)
            I(len(name))
            out.extend(name.encode())
            for k in range(n):
                a, b = toks(i + 1 + k)
                I(a)
                if kind & 4:
                    D(b)
                else:
                    I(b)
            i += 1 + n
        else:
            raise ValueError(f"segment {seg!r} is not handled by this converter")
    return bytes(out)
