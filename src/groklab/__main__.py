# `python -m groklab`: a Ctrl-C before groklab's own handler is in place (while the CLI imports) is one line too
try:
    from groklab.cli import main
except KeyboardInterrupt:
    import sys

    print("groklab: interrupted while starting; nothing was written", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
