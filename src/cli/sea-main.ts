/** Entry of the single executable (scripts/build-sea.ts): the CLI, whatever the executable is called. */
import { runMain } from './main.js';

void runMain();
