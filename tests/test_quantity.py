"""Quantities: rlscale's one parser agrees with the Kubernetes client's on every suffix, and refuses what is not one."""

from __future__ import annotations

import pytest
from kubernetes.utils import parse_quantity as kubernetes_parse

from rlscale.quantity import format_cpu, format_memory, parse_quantity

SAMPLES = ["0", "1", "1.5", "250m", "100u", "250000000n", "2k", "3M", "4G", "5T", "6P", "7E",
           "1Ki", "512Mi", "2Gi", "3Ti", "4Pi", "5Ei", "1e3", "0.5Gi", "+2"]


@pytest.mark.parametrize("text", SAMPLES)
def test_every_suffix_agrees_with_the_kubernetes_client(text: str) -> None:
    assert parse_quantity(text) == pytest.approx(float(kubernetes_parse(text)), rel=1e-12)


@pytest.mark.parametrize("text", ["", "m", "1.2.3", "12Q", "1 Gi", "Gi1", "1gi", "nan", "inf"])
def test_what_is_not_a_quantity_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_quantity(text)
    assert "\n" not in str(error.value) and repr(text) in str(error.value)


@pytest.mark.parametrize(("value", "expected"), [(True, ValueError), (None, ValueError), ([1], ValueError)])
def test_non_quantities_of_other_types_are_refused(value: object, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        parse_quantity(value)


def test_formatted_quantities_parse_back() -> None:
    assert parse_quantity(format_cpu(0.25)) == 0.25
    assert parse_quantity(format_memory(300 * 2**20 + 1)) == 301 * 2**20  # rounded up to a whole MiB
