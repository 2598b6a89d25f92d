from vmpooler.cli import main

raise SystemExit(main())
