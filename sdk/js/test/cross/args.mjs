// Command-line parsing shared by publisher.mjs and subscriber.mjs: positional arguments, and
// `--name=value` flags. Exits with status 2 and the usage line when the check fails.
export function parseArgs(usage, check) {
  const all = process.argv.slice(2);
  const positional = all.filter((a) => !a.startsWith('--'));
  const flags = Object.fromEntries(all.filter((a) => a.startsWith('--')).map((a) => a.slice(2).split('=', 2)));
  if (!check(positional)) {
    process.stderr.write(`usage: ${usage}\n`);
    process.exit(2);
  }
  return { positional, flags };
}

/** Writes `what failed` to stderr and exits with status 1. */
export function fail(script, err) {
  process.stderr.write(`${script}: ${err.code ?? ''} ${err.message}\n`);
  process.exit(1);
}
