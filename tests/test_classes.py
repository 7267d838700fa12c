from pathlib import Path

import pytest

from lc_utils.classes import DEEPGLOBE, ClassSchema


def test_deepglobe_order_and_unknown() -> None:
    assert DEEPGLOBE.names == ("urban", "agriculture", "rangeland", "forest", "water", "barren",
                               "unknown")
    assert DEEPGLOBE.unknown_index == 6
    assert DEEPGLOBE.colors[DEEPGLOBE.index("water")] == (0, 0, 255)
    assert DEEPGLOBE.known_indices() == [0, 1, 2, 3, 4, 5]
    assert DEEPGLOBE.palette.shape == (7, 3)


def test_real_class_dict_matches_deepglobe(real_root: Path) -> None:
    schema = ClassSchema.from_class_dict_csv(real_root / "class_dict.csv")
    assert schema.colors == DEEPGLOBE.colors
    assert schema.names[0] == "urban_land"
    assert schema.unknown_index == 6


def test_other_palette_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "palette.csv"
    path.write_text("name, r, g, b\nroad,128,64,128\nsky,70,130,180\n")
    schema = ClassSchema.from_class_dict_csv(path)
    assert schema.names == ("road", "sky")
    assert schema.colors == ((128, 64, 128), (70, 130, 180))
    assert schema.unknown_index is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "label,r,g,b\nx,1,2,3\n", "header"),
        ("bad.csv", "name,r,g,b\nx,1,2,oops\n", ":2: colour is not three integers"),
        ("bad.csv", "name,r,g,b\nx,1,2,3\ny,1,2,3\n", "share a colour"),
        ("bad.csv", "name,r,g,b\nx,1,2,300\n", "0..255"),
        ("bad.csv", "name,r,g,b\n", "at least one class"),
        ("bad.csv", "value,name\nten,x\n", ":2: value 'ten' is not an integer"),
        ("bad.csv", "value,name\n1,x\n1,y\n", "two classes share an index value"),
        ("bad.toml", 'masks = ["index"]\n[[classes]]\nname = "a"\ncolor = [1, 2, 3]\n',
         r"class 1 \('a'\) lacks \['value'\]"),
        ("bad.toml", 'masks = ["png"]\n', "give"),
        ("bad.toml", "colour_map = 1\n", r"unknown key\(s\) \['colour_map'\]"),
        ("bad.toml", 'unknown = "z"\n[[classes]]\nname = "a"\ncolor = [1, 2, 3]\n', "'z' is not a class"),
        ("bad.toml", 'masks = ["index"]\nignore_values = [1]\n[[classes]]\nname = "a"\nvalue = 1\n'
                     'color = [1, 2, 3]\n', "both a class and ignored"),
        ("bad.toml", "name = \n", "not a readable TOML file"),
    ],
)
def test_bad_schema_files_name_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        ClassSchema.from_file(path)
    assert name in str(error.value)


def test_missing_palette_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        ClassSchema.from_class_dict_csv(tmp_path / "nothere.csv")


def test_unknown_class_name_lookup() -> None:
    with pytest.raises(KeyError, match="classes are"):
        DEEPGLOBE.index("snow")
