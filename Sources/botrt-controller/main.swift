import ControllerApp
import Foundation

exit(await ControllerMain.run(Array(CommandLine.arguments.dropFirst())))
