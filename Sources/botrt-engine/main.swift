import EngineCLI
import Foundation

exit(await EngineMain.run(Array(CommandLine.arguments.dropFirst())))
