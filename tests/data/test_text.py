"""Reading text files: gzip by magic bytes, BOM, line ends, invalid UTF-8, NUL bytes, bad paths."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from seqattn.data.text import LineStats, iter_lines, open_binary, read_lines
from seqattn.errors import DataError


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_plain_lines_without_line_ends(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", "eins\nzwei  \n\nvier ü".encode())
    assert read_lines(path) == ["eins", "zwei  ", "", "vier ü"]
    # A final newline does not add an empty line.
    _write(path, b"eins\nzwei\n")
    assert read_lines(path) == ["eins", "zwei"]


def test_gzip_recognised_by_magic_bytes_in_a_txt_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "hidden.txt", gzip.compress("grüße\nwelt\n".encode()))
    assert read_lines(path) == ["grüße", "welt"]


def test_gz_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.gz", gzip.compress(b"one\ntwo\n"))
    assert read_lines(path) == ["one", "two"]
    with open_binary(path) as handle:
        assert handle.read() == b"one\ntwo\n"


def test_gz_name_without_gzip_content_is_read_as_plain_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.gz", b"not compressed\n")
    assert read_lines(path) == ["not compressed"]


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.gz", gzip.compress(b"line\n" * 1000)[:-12])
    with pytest.raises(DataError) as error:
        read_lines(path)
    assert str(path) in _one_line(error)


def test_bom_dropped_on_first_line_only(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    path = _write(tmp_path / "bom.txt", bom + b"first\n" + bom + b"second\n")
    assert read_lines(path) == ["first", "\ufeffsecond"]


def test_bom_dropped_in_gzip_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "bom.gz", gzip.compress(b"\xef\xbb\xbfx\ny\n"))
    assert read_lines(path) == ["x", "y"]


def test_crlf_line_ends(tmp_path: Path) -> None:
    path = _write(tmp_path / "dos.txt", b"a b\r\nc\r\n\r\nd")
    assert read_lines(path) == ["a b", "c", "", "d"]


def test_mixed_crlf_and_lf(tmp_path: Path) -> None:
    path = _write(tmp_path / "mixed.txt", b"a\r\nb\nc\r\n")
    assert read_lines(path) == ["a", "b", "c"]


def test_no_carriage_return_survives_in_any_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "cr.txt", b"a\rb\nc\r\r\nd\re\r\n")
    lines = read_lines(path)
    assert lines
    assert all("\r" not in line for line in lines)
    # Nothing is lost: every letter is still there, in order.
    assert "".join("".join(lines).split()) == "abcde"


def test_cr_only_line_ends(tmp_path: Path) -> None:
    path = _write(tmp_path / "mac.txt", b"a\rb\rc\r")
    assert read_lines(path) == ["a", "b", "c"]


def test_invalid_utf8_names_file_line_and_byte(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.txt", b"fine\nab\xffcd\n")
    with pytest.raises(DataError) as error:
        read_lines(path)
    message = _one_line(error)
    assert f"{path}:2:" in message
    assert "byte 3" in message
    assert "0xff" in message


def test_invalid_utf8_in_gzip_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.gz", gzip.compress(b"a\nb\n\xc3\x28\n"))
    with pytest.raises(DataError) as error:
        read_lines(path)
    message = _one_line(error)
    assert f"{path}:3:" in message
    assert "byte 1" in message


def test_errors_replace_counts_replaced_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.txt", b"ok\nx\xffy\xfe\nok\n\xc3\n")
    stats = LineStats()
    lines = list(iter_lines(path, errors="replace", stats=stats))
    assert lines == ["ok", "x\ufffdy\ufffd", "ok", "\ufffd"]
    assert stats.replaced == 2  # lines, not bytes
    assert stats.replaced_lines == [2, 4]
    assert stats.lines == 4


def test_errors_replace_keeps_only_the_first_few_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.txt", b"\xff\n" * 25)
    stats = LineStats()
    assert len(list(iter_lines(path, errors="replace", stats=stats))) == 25
    assert stats.replaced == 25
    assert stats.replaced_lines == list(range(1, 11))


def test_unknown_errors_mode_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.txt", b"a\n")
    with pytest.raises(ValueError, match="errors"):
        read_lines(path, errors="ignore")


def test_nul_byte_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "nul.txt", b"one\ntwo\nth\x00ree\n")
    with pytest.raises(DataError) as error:
        read_lines(path)
    message = _one_line(error)
    assert f"{path}:3:" in message
    assert "NUL" in message


def test_utf16_file_is_reported_as_nul_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "utf16.txt", "hello\nworld\n".encode("utf-16"))
    with pytest.raises(DataError) as error:
        read_lines(path)
    message = _one_line(error)
    assert f"{path}:1:" in message
    assert "NUL" in message


def test_nul_byte_is_an_error_even_with_errors_replace(tmp_path: Path) -> None:
    path = _write(tmp_path / "nul.txt", b"\x00\n")
    with pytest.raises(DataError, match="NUL"):
        read_lines(path, errors="replace")


def test_directory_is_a_one_line_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        read_lines(tmp_path)
    message = _one_line(error)
    assert str(tmp_path) in message
    assert "directory" in message


def test_missing_file_is_a_one_line_data_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing.txt"
    with pytest.raises(DataError) as error:
        read_lines(path)
    message = _one_line(error)
    assert str(path) in message
    assert "no such file" in message


def test_missing_file_fails_on_first_iteration_not_silently(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        next(iter_lines(tmp_path / "missing.txt"))


def test_one_megabyte_line(tmp_path: Path) -> None:
    long_line = "ä" * 300_000 + "x" * 500_000  # 1.1 MB of UTF-8
    path = _write(tmp_path / "long.txt", f"short\n{long_line}\nend\n".encode())
    assert read_lines(path) == ["short", long_line, "end"]


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert read_lines(_write(tmp_path / "empty.txt", b"")) == []
    assert read_lines(_write(tmp_path / "empty.gz", gzip.compress(b""))) == []
    stats = LineStats()
    assert list(iter_lines(tmp_path / "empty.txt", stats=stats)) == []
    assert stats.lines == 0


def test_bom_only_file_yields_one_empty_line(tmp_path: Path) -> None:
    assert read_lines(_write(tmp_path / "bom.txt", b"\xef\xbb\xbf")) == [""]
