from services.session.server import main

main()
