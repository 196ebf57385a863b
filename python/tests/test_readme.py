"""The package README's example runs as written (against a real nats-server and bridge)."""

from __future__ import annotations

import contextlib
import io
import re
import unittest
from typing import Any, Dict

from support import REPO, RealTestCase


class ReadmeTest(RealTestCase):
    async def test_readme_example(self) -> None:
        text = (REPO / "python" / "README.md").read_text()
        blocks = re.findall(r"```python\n(.*?)```", text, re.S)
        self.assertEqual(len(blocks), 1)
        nats_server = self.start_nats()
        self.start_bridge(nats_server.url, "--history", "on")
        # The example ends with asyncio.run(main()): here the test's loop runs main() instead.
        code = blocks[0].replace("nats://127.0.0.1:4222", nats_server.url)
        self.assertIn("\nasyncio.run(main())\n", code)
        scope: Dict[str, Any] = {}
        exec(compile(code.replace("\nasyncio.run(main())\n", "\n"), "python/README.md", "exec"), scope)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            await scope["main"]()
        self.assertEqual(out.getvalue(), "jetstream [] False\n")


if __name__ == "__main__":
    unittest.main()
