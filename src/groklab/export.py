"""The README's `groklab.export.to_lens` / `load_module` / `export_run`: the exporters live in
`groklab.store.export`."""

from groklab.store.export import check_exportable, export_run, load_module, to_hf, to_lens, to_module

__all__ = ["check_exportable", "export_run", "load_module", "to_hf", "to_lens", "to_module"]
