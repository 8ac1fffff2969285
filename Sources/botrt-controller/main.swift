import ControllerApp

await ControllerCommand.main()
