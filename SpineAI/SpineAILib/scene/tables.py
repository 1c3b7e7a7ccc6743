"""Columns of Python values <-> vtkMRMLTableNode, keeping each column's type.

Types: all-bool -> bit, all-int -> int (long long when a value needs 64 bits),
numbers (None/NaN allowed) -> double, anything else -> string (None -> "").
The .tsv writer stores the types in a ``.schema.tsv`` beside the table, so they
survive a save and reload.
"""

import math
import numbers


def _column_array(name, values):
    import vtk

    values = list(values)
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in values):
        array, convert = vtk.vtkBitArray(), int
    elif present and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        fits = all(-(2**31) <= int(v) < 2**31 for v in values)
        array, convert = (vtk.vtkIntArray() if fits else vtk.vtkTypeInt64Array()), int
    elif all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in values):
        array, convert = vtk.vtkDoubleArray(), lambda v: math.nan if v is None else float(v)
    else:
        array, convert = vtk.vtkStringArray(), lambda v: "" if v is None else str(v)
    array.SetName(str(name))
    for value in values:
        array.InsertNextValue(convert(value))
    return array


def add_table(ctx, name, columns):
    """A table node with one column per ``{name: [values]}`` entry (all of one length)."""
    lengths = {len(list(v)) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"table '{name}': columns differ in length ({sorted(lengths)})")
    node = ctx.scene.AddNewNodeByClass("vtkMRMLTableNode", ctx.scene.GenerateUniqueName(name))
    for column_name, values in columns.items():
        node.AddColumn(_column_array(column_name, values))
    return node


def table_to_columns(node):
    """``{name: [values]}``: int, float, bool or str per the column's type."""
    table = node.GetTable()
    columns = {}
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        n = array.GetNumberOfTuples()
        if array.IsA("vtkStringArray"):
            values = [str(array.GetValue(i)) for i in range(n)]
        elif array.IsA("vtkBitArray"):
            values = [bool(array.GetValue(i)) for i in range(n)]
        elif array.IsA("vtkDataArray") and array.GetDataType() in (10, 11):  # VTK_FLOAT, VTK_DOUBLE
            values = [float(array.GetValue(i)) for i in range(n)]
        elif array.IsA("vtkDataArray"):
            values = [int(array.GetValue(i)) for i in range(n)]
        else:
            values = [str(array.GetVariantValue(i).ToString()) for i in range(n)]
        columns[array.GetName()] = values
    return columns
