from services.presence.server import main

main()
