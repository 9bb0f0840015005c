"""Resource quantities ("500m", "1.5Gi", "2e3"): parsing, comparing and the canonical form.

The API server stores quantities in canonical form (``1000m`` becomes ``1``, ``1024Mi`` becomes
``1Gi``) as Kubernetes does; the scheduler and kubelet compare them as exact fractions.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

from agents.machinery.errors import KubelabError


class QuantityError(KubelabError):
    """Not a valid quantity."""


_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL.items()}
_BINARY_SUFFIX = {v: k for k, v in _BINARY.items()}
_SYNTAX = re.compile(r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")

MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
NUMERIC = "unable to parse numeric part of quantity"
SUFFIX = "unable to parse quantity's suffix"
# Exact arithmetic on 10**exponent costs time and memory with the exponent: beyond this a quantity
# is refused (the largest a cluster uses are exa-bytes, 1e18) rather than computed for minutes.
MAX_EXPONENT = 1000
MAX_DIGITS = 4000  # Python's int() refuses more than 4300 digits


@lru_cache(maxsize=4096)
def parse(text: str | int | float) -> tuple[Fraction, str]:
    """The exact value and the format ("BinarySI", "DecimalSI" or "DecimalExponent").

    Memoised: a cluster uses few distinct quantities ("100m", "64Mi"), over and over.
    """
    if isinstance(text, bool):
        raise QuantityError(MESSAGE)
    if isinstance(text, int):
        return Fraction(text), "DecimalSI"
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(MESSAGE)
        return Fraction(str(text)), "DecimalSI"
    match = _SYNTAX.match(text.strip())
    if not match:
        raise QuantityError(MESSAGE)
    sign, number, suffix = match.group(1), match.group(2), match.group(3) or ""
    if len(number) > MAX_DIGITS:
        raise QuantityError(NUMERIC)
    if len(suffix) > 1 and suffix[0] in "eE" and (len(suffix) > 12 or abs(int(suffix[1:])) > MAX_EXPONENT):
        raise QuantityError(SUFFIX)
    value = Fraction(number)
    if sign == "-":
        value = -value
    if suffix in _BINARY:
        return value * (2 ** _BINARY[suffix]), "BinarySI"
    if len(suffix) > 1 and suffix[0] in "eE":
        return value * Fraction(10) ** int(suffix[1:]), "DecimalExponent"
    return value * Fraction(10) ** _DECIMAL[suffix], "DecimalSI"


def value(text: str | int | float) -> Fraction:
    return parse(text)[0]


@lru_cache(maxsize=4096)
def milli(text: str | int | float) -> int:
    """The value in thousandths, rounded up (CPU millicores)."""
    return math.ceil(value(text) * 1000)


def whole(text: str | int | float) -> int:
    """The value rounded up to an integer (bytes, counts)."""
    return math.ceil(value(text))


def _decimal(amount: Fraction, exponent_style: bool) -> str:
    # Round up to nano units, the finest Kubernetes keeps.
    nanos = math.ceil(amount * 10**9) if amount >= 0 else -math.ceil(-amount * 10**9)
    if nanos == 0:
        return "0"
    exp = -9
    while exp < 18 and nanos % 1000 == 0:
        nanos //= 1000
        exp += 3
    if exponent_style:
        return f"{nanos}e{exp}" if exp else str(nanos)
    return f"{nanos}{_DECIMAL_SUFFIX[exp]}"


@lru_cache(maxsize=4096)
def canonical(text: str | int | float) -> str:
    amount, fmt = parse(text)
    if fmt == "BinarySI":
        if -1024 < amount < 1024 or amount.denominator != 1:
            return _decimal(amount, False)
        whole_value = int(amount)
        if whole_value == 0:
            return "0"
        exp = 0
        while exp < 60 and whole_value % 1024 == 0:
            whole_value //= 1024
            exp += 10
        return f"{whole_value}{_BINARY_SUFFIX.get(exp, '')}"
    return _decimal(amount, fmt == "DecimalExponent")
