/** `npm run bench -- <name>`: runs the default export of bench/<name>.ts, which prints JSON lines. */
const name = process.argv[2];
if (!name || !/^[\w-]+$/.test(name)) {
  console.error('usage: npm run bench -- <name>   (a file bench/<name>.ts)');
  process.exit(2);
}
const mod: { default: () => Promise<void> | void } = await import(`./${name}.ts`);
await mod.default();
