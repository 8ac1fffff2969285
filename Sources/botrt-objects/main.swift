import Foundation
import ObjectsCLI

exit(await ObjectsMain.run(Array(CommandLine.arguments.dropFirst())))
