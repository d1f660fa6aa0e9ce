// `sewd serve` on a free port, for the page test and the Node test.
import { spawn } from "node:child_process";

/** Starts `cli serve --root root` on a free port; resolves to { url, server } (url without a
 *  trailing slash) once it prints its address, rejects if it exits or is silent for 15 s. */
export function startServer(cli, root) {
  return new Promise((resolve, reject) => {
    const server = spawn(cli, ["serve", "--port", "0", "--root", root], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const timer = setTimeout(() => reject(new Error(`sewd serve did not start: ${out}`)), 15000);
    server.stdout.on("data", (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: `http://127.0.0.1:${m[1]}`, server });
      }
    });
    server.stderr.on("data", (d) => process.stderr.write(`[serve] ${d}`));
    server.on("exit", (code) => reject(new Error(`sewd serve exited with ${code}: ${out}`)));
  });
}
