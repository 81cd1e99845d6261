#!/usr/bin/env node
import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { TablesyncError } from '../errors.js';
import { checkCommand } from './check.js';
import { loadConfigs, withConfigOption } from './config-option.js';
import { demoCommand } from './demo.js';
import { runCommand } from './run.js';
import { setupCommand } from './setup.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

interface ConfigOptions {
  config: string[];
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
    .action(async (options: ConfigOptions) => setExitCode(await checkCommand(loadConfigs(options.config), process.stdout)));

  withConfigOption(program.command('setup'))
    .description("install or upgrade the capture triggers and tablesync's own tables")
    .action(async (options: ConfigOptions) => setExitCode(await setupCommand(loadConfigs(options.config), process.stdout)));

  withConfigOption(program.command('run'))
    .description('the daemon: install capture, then run until SIGTERM or SIGINT')
    .action(async (options: ConfigOptions) => setExitCode(await runCommand(loadConfigs(options.config))));

  program
    .command('demo')
    .description('two SQLite instances in a temporary folder, showing what tablesync does')
    .option('--keep', 'keep the temporary folder afterwards')
    .action(async (options: { keep?: boolean }) => setExitCode(await demoCommand(process.stdout, options.keep === true)));

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
