#!/usr/bin/env node
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { TablesyncError } from '../errors.js';
import { keepSide, positiveInteger, recordId, type RecordTarget } from './arguments.js';
import { loadConfigs, withConfigOption } from './config-option.js';
import { singleConfig } from './open-instance.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

// Each command's module is loaded when that command runs: --help and --version stay quick, and a
// command does not pay for the daemon's dependencies.

interface ConfigOptions {
  config: string[];
}

/** `--sync S --table N --id ID`, all required: one record of one synced table. */
function withRecordOptions(command: Command): Command {
  return command
    .requiredOption('--sync <name>', 'the sync, by its name in the file')
    .requiredOption('--table <number>', "the table's number in the sync", positiveInteger('--table'))
    .requiredOption('--id <id>', "our record's id (the table's key)", recordId('--id'));
}

/** The -c files of a subcommand's parent (`tablesync conflicts -c FILE list`). */
function configFiles(command: Command): string[] {
  return (command.optsWithGlobals() as ConfigOptions).config;
}

function buildProgram(setExitCode: (code: number) => void): Command {
  const program = new Command('tablesync')
    .description('Keeps the tables of several instances of a business application in step, field by field.')
    .version(version, '-V, --version')
    .addOption(new Option('--verbose', 'show the stack trace of an error'))
    .showHelpAfterError('(run tablesync --help for the list of commands)')
    .exitOverride();

  withConfigOption(program.command('check'))
    .description('validate the file, connect to the database, check tables and columns, report capture; exits 1 on any error')
    .action(async (options: ConfigOptions) => setExitCode(await (await import('./check.js')).checkCommand(loadConfigs(options.config), process.stdout)));

  withConfigOption(program.command('setup'))
    .description("install or upgrade the capture triggers and tablesync's own tables")
    .action(async (options: ConfigOptions) => setExitCode(await (await import('./setup.js')).setupCommand(loadConfigs(options.config), process.stdout)));

  withConfigOption(program.command('run'))
    .description('the daemon: install capture, then run until SIGTERM or SIGINT; SIGHUP reads the files again')
    .action(async (options: ConfigOptions) => setExitCode(await (await import('./run.js')).runCommand(loadConfigs(options.config))));

  withConfigOption(program.command('status'))
    .description('per sync: role, transport, peer, changes waiting, last batch in and out, lag, open conflicts, parked changes')
    .option('--json', 'print one JSON document instead of tables')
    .action(async (options: ConfigOptions & { json?: boolean }) =>
      setExitCode(await (await import('./status.js')).statusCommand(loadConfigs(options.config), process.stdout, { json: options.json === true })),
    );

  const conflicts = withConfigOption(program.command('conflicts'), { single: true }).description('the manual conflict queue: list, resolve');
  conflicts
    .command('list')
    .description('list the open conflicts')
    .option('--all', 'list resolved conflicts too')
    .action(async (options: { all?: boolean }, command: Command) =>
      setExitCode(await (await import('./conflicts.js')).conflictsListCommand(singleConfig(configFiles(command), 'conflicts'), process.stdout, { all: options.all === true })),
    );
  conflicts
    .command('resolve')
    .description("end a conflict, keeping our value or taking the peer's; the peer hears of it at the next exchange")
    .argument('<id>', 'the conflict, by the id that conflicts list shows', positiveInteger('the conflict id'))
    .option('--keep <side>', 'ours or theirs (required)')
    .action(async (id: number, options: { keep?: string }, command: Command) => {
      const keep = keepSide(options.keep);
      setExitCode(await (await import('./conflicts.js')).conflictsResolveCommand(singleConfig(configFiles(command), 'conflicts'), process.stdout, id, keep));
    });

  const errors = withConfigOption(program.command('errors'), { single: true }).description("the peer's changes that could not be applied here (parked): list, retry");
  errors
    .command('list')
    .description('list the parked changes with their reasons')
    .action(async (_options: unknown, command: Command) => setExitCode(await (await import('./errors.js')).errorsListCommand(singleConfig(configFiles(command), 'errors'), process.stdout)));
  errors
    .command('retry')
    .description('apply parked changes again (all, or one); exits 1 if any is still parked')
    .argument('[id]', 'only this parked change, by the id that errors list shows', positiveInteger('the parked change id'))
    .action(async (id: number | undefined, _options: unknown, command: Command) =>
      setExitCode(await (await import('./errors.js')).errorsRetryCommand(singleConfig(configFiles(command), 'errors'), process.stdout, id)),
    );

  withRecordOptions(withConfigOption(program.command('link'), { single: true }))
    .description("print the peer's record id linked to one of our records; exits 1 if there is no link yet")
    .action(async (options: ConfigOptions & RecordTarget) =>
      setExitCode(await (await import('./link.js')).linkCommand(singleConfig(options.config, 'link'), process.stdout, { sync: options.sync, table: options.table, id: options.id })),
    );

  withRecordOptions(withConfigOption(program.command('push-record'), { single: true }))
    .description('queue one record to be sent in full at the next exchange')
    .action(async (options: ConfigOptions & RecordTarget) =>
      setExitCode(await (await import('./push-record.js')).pushRecordCommand(singleConfig(options.config, 'push-record'), process.stdout, { sync: options.sync, table: options.table, id: options.id })),
    );

  withConfigOption(program.command('initial-sync'))
    .description('send every existing row (every table, one table, or one field) through the running daemon; resumable')
    .option('--sync <name>', 'only this sync')
    .option('--table <number>', 'only this table (its number in the sync)', positiveInteger('--table'))
    .option('--field <number>', 'only this field (its number in the sync)', positiveInteger('--field'))
    .option('--create', 'with --field: create records the peer does not have (by default a field goes only to linked records)')
    .option('--restart', 'forget how far earlier runs came and send everything again')
    .option('--no-backup', 'skip the safety backups taken first, here and on the receiving side, of synced tables that hold data')
    .option('--backup-dir <dir>', "where this side's safety backup goes (default: the file's backups.dir, or backups/ beside it)")
    .action(async (options: ConfigOptions & { sync?: string; table?: number; field?: number; create?: boolean; restart?: boolean; backup: boolean; backupDir?: string }) =>
      setExitCode(
        await (await import('./initial-sync.js')).initialSyncCommand(singleConfig(options.config, 'initial-sync'), process.stdout, {
          ...(options.sync === undefined ? {} : { sync: options.sync }),
          ...(options.table === undefined ? {} : { table: options.table }),
          ...(options.field === undefined ? {} : { field: options.field }),
          create: options.field === undefined || options.create === true,
          restart: options.restart === true,
          backup: options.backup,
          ...(options.backupDir === undefined ? {} : { backupDir: options.backupDir }),
        }),
      ),
    );

  withConfigOption(program.command('verify'), { single: true })
    .description("compare both sides by chunk checksums of the both-ways fields and the links, through the sync's daemons; exits 1 when they differ")
    .option('--peer-config <file>', "the peer's configuration file: read both databases from here instead of asking the peer's daemon")
    .option('--sync <name>', 'only this sync')
    .option('--table <number>', 'only this table (its number in the sync)', positiveInteger('--table'))
    .option('--repair', 'queue what differs to be sent again at the next exchange')
    .option('--chunk-rows <number>', 'our records per chunk (default 1000, at most 10000)', positiveInteger('--chunk-rows'))
    .option('--timeout <seconds>', "through the daemons: give up when the peer has not answered for this long (default 120)", positiveInteger('--timeout'))
    .action(async (options: ConfigOptions & { peerConfig?: string; sync?: string; table?: number; repair?: boolean; chunkRows?: number; timeout?: number }) => {
      const { verifyCommand, verifyConfigs } = await import('./verify.js');
      const [ours, peer] = verifyConfigs(options.config, options.peerConfig);
      setExitCode(
        await verifyCommand(ours, peer, process.stdout, {
          ...(options.sync === undefined ? {} : { sync: options.sync }),
          ...(options.table === undefined ? {} : { table: options.table }),
          ...(options.chunkRows === undefined ? {} : { chunkRows: options.chunkRows }),
          ...(options.timeout === undefined ? {} : { timeoutSeconds: options.timeout }),
          repair: options.repair === true,
        }),
      );
    });

  withConfigOption(program.command('backup'), { single: true })
    .description("write the synced tables and tablesync's state to one portable, compressed (optionally encrypted) file")
    .option('-o, --output <file>', 'the backup file to write (required; must not exist yet)')
    .option('--password-env <var>', 'encrypt with the password held in this environment variable')
    .action(async (options: ConfigOptions & { output?: string; passwordEnv?: string }) =>
      setExitCode(await (await import('./backup.js')).backupCommand(singleConfig(options.config, 'backup'), process.stdout, options)),
    );

  withConfigOption(program.command('restore'), { single: true })
    .description('check a backup from end to end, then restore it in one transaction (into any dialect); stop the daemon first')
    .option('-i, --input <file>', 'the backup file to restore (required)')
    .option('--password-env <var>', 'the environment variable holding the password of an encrypted backup')
    .action(async (options: ConfigOptions & { input?: string; passwordEnv?: string }) =>
      setExitCode(await (await import('./restore.js')).restoreCommand(singleConfig(options.config, 'restore'), process.stdout, options)),
    );

  program
    .command('demo')
    .description('two SQLite instances in a temporary folder, showing what tablesync does')
    .option('--keep', 'keep the temporary folder afterwards')
    .action(async (options: { keep?: boolean }) => setExitCode(await (await import('./demo.js')).demoCommand(process.stdout, options.keep === true)));

  return program;
}

/** Runs the command line; returns the exit code (0 success, 1 runtime failure, 2 usage or configuration). */
export async function main(argv: readonly string[]): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((code) => (exitCode = code));
  const verbose = argv.includes('--verbose');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed its own message (or the help, or the version).
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof TablesyncError) {
      process.stderr.write(`tablesync: ${err.message}\n`);
      if (verbose && err.cause !== undefined) process.stderr.write(`${String((err.cause as Error).stack ?? err.cause)}\n`);
      return err.exitCode;
    }
    const error = err as Error;
    process.stderr.write(`tablesync: unexpected error: ${error.message}${verbose ? '' : ' (run with --verbose for the stack trace)'}\n`);
    if (verbose) process.stderr.write(`${error.stack ?? ''}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
