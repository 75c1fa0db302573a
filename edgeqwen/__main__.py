from edgeqwen.cli import main

raise SystemExit(main())
