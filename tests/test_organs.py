"""The organ table (organs.csv): reading, defaults, and every mistake named with its line."""

from __future__ import annotations

import pytest

from unetlib.core.errors import InputError
from unetlib.data.organs import (
    DEFAULT_COLORS,
    find_organ_table,
    read_organ_table,
    write_organ_table,
)


def table_file(tmp_path, text):
    path = tmp_path / "organs.csv"
    path.write_text(text)
    return path


def test_a_table_with_colours_keeps_its_order_values_and_colours(tmp_path):
    path = table_file(tmp_path, "value,name,color\n0,background,\n3,liver,#E6194B\n"
                                "1,kidney,#3cb44b\n")
    table = read_organ_table(path)
    assert table.names == ["liver", "kidney"] and table.values == [3, 1]
    assert table.classes == 3 and table.explicit_colors
    assert table.value_lookup() == {0: 0, 3: 1, 1: 2}
    assert table.class_values().tolist() == [0, 3, 1]
    assert table.organs[0].rgb == (0xe6, 0x19, 0x4b)
    palette = table.palette()
    assert palette[9:12] == [0xe6, 0x19, 0x4b] and palette[:3] == [0, 0, 0]


def test_organs_without_colours_get_distinct_default_colours(tmp_path):
    table = read_organ_table(table_file(tmp_path, "value, Name\n1,liver\n2,spleen\n"))
    assert [organ.color for organ in table.organs] == list(DEFAULT_COLORS[:2])
    assert not table.explicit_colors


def test_written_table_reads_back_the_same(tmp_path):
    table = read_organ_table(table_file(tmp_path, "value,name\n1,liver\n700,bladder\n"))
    written = write_organ_table(tmp_path / "copy" / "organs.csv", table)
    again = read_organ_table(written)
    assert again.organs == table.organs
    assert again.class_values().dtype.itemsize == 2  # value 700 needs 16 bits


def test_a_data_folder_finds_its_table_given_itself_or_its_train_folder(tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    assert find_organ_table(tmp_path / "data") is None
    table_file(tmp_path / "data", "value,name\n1,liver\n")
    assert find_organ_table(tmp_path / "data").names == ["liver"]
    assert find_organ_table(tmp_path / "data" / "train").names == ["liver"]


@pytest.mark.parametrize("text, problem", [
    ("name\nliver\n", "needs a header line 'value,name'"),
    ("value,name\n", "needs a header line"),
    ("value,name\none,liver\n", "line 2: value 'one' is not a whole number"),
    ("value,name\n70000,liver\n", "line 2: value 70000 is outside 0-65535"),
    ("value,name\n1,liver\n1,kidney\n", "line 3: value 1 is listed twice"),
    ("value,name\n1,liver\n2,Liver\n", "line 3: name 'Liver' is listed twice"),
    ("value,name\n1,\n", "line 2: value 1 has no name"),
    ("value,name,color\n1,liver,#ff0000\n2,kidney,\n", "line 3: kidney has no color"),
    ("value,name,color\n1,liver,red\n", "color 'red' of liver is not a #rrggbb colour"),
    ("value,name,color\n1,liver,#000000\n", "other than black"),
    ("value,name,color\n1,liver,#ff0000\n2,kidney,#FF0000\n", "color #ff0000 is used by more"),
    ("value,name\n0,background\n", "lists no organ"),
])
def test_every_mistake_names_the_file_and_line(tmp_path, text, problem):
    path = table_file(tmp_path, text)
    with pytest.raises(InputError) as raised:
        read_organ_table(path)
    assert str(raised.value).startswith(f"{path}: ") and problem in str(raised.value)
